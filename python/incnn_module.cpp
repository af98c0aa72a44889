//===- incnn_module.cpp - Python bindings: `import incnn` -----------------===//
//
// pybind11 bindings over the runtime (Program, Tokenizer, Session, Document)
// and, when built with it, the compiler driver (incnn.compile).
//
// Threading: a Session or Document has a mutex, taken by every method and
// property with the GIL released (a call waiting for another thread's edit
// lets Python threads run). What a call reads is copied out under the mutex
// and becomes Python objects after it is released.
//
//===----------------------------------------------------------------------===//
#ifdef INCNN_PYTHON_COMPILER
#include "incnn/Compiler/Driver.h"
#endif
#include "incnn/runtime/Document.h"
#include "incnn/runtime/EditLine.h"
#include "incnn/runtime/Limits.h"
#include "incnn/runtime/Program.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Serialize.h"
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Tokenizer.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <unistd.h>

namespace py = pybind11;
using namespace incnn::runtime;

namespace {

/// An argument or `self` that must be an initialized instance of the bound
/// class T. For an instance made with T.__new__ and never initialized,
/// pybind11 would hand the function freshly allocated, uninitialized memory;
/// this raises TypeError instead.
template <typename T> struct Ref {
  T *ptr = nullptr;
  T *operator->() const { return ptr; }
  T &operator*() const { return *ptr; }
};

/// An integer argument: any object with __index__ (int, NumPy integers).
/// Values past 64 bits raise ValueError; other types are refused.
struct Int64 {
  int64_t value = 0;
  operator int64_t() const { return value; }
};

/// A text argument: a str, or bytes holding valid UTF-8 (ValueError
/// otherwise).
struct Text {
  std::string bytes;
};

/// The value of integer `h` (anything with __index__, else TypeError);
/// ValueError naming `what` past 64 bits.
int64_t toInt64(py::handle h, const char *what) {
  PyObject *index = PyNumber_Index(h.ptr());
  if (!index)
    throw py::error_already_set();
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
  Py_DECREF(index);
  if (overflow)
    throw py::value_error(std::string(what) + " is out of range");
  if (v == -1 && PyErr_Occurred())
    throw py::error_already_set();
  return v;
}

} // namespace

namespace pybind11::detail {

template <typename T> struct type_caster<Ref<T>> {
  PYBIND11_TYPE_CASTER(Ref<T>, make_caster<T>::name);
  bool load(handle src, bool) {
    const type_info *type = get_type_info(typeid(T));
    if (!type || !PyObject_TypeCheck(src.ptr(), type->type))
      return false;
    value_and_holder vh =
        reinterpret_cast<instance *>(src.ptr())->get_value_and_holder(type);
    if (!vh.value_ptr())
      throw type_error(std::string(Py_TYPE(src.ptr())->tp_name) +
                       " object is not initialized (its __init__ was not "
                       "called)");
    value.ptr = vh.template value_ptr<T>();
    return true;
  }
};

template <> struct type_caster<Int64> {
  PYBIND11_TYPE_CASTER(Int64, const_name("int"));
  bool load(handle src, bool) {
    if (!PyIndex_Check(src.ptr()))
      return false;
    value.value = toInt64(src, "an integer argument");
    return true;
  }
};

template <> struct type_caster<Text> {
  PYBIND11_TYPE_CASTER(Text, const_name("str"));
  bool load(handle src, bool) {
    if (PyUnicode_Check(src.ptr())) {
      // A str with lone surrogates raises UnicodeEncodeError, a ValueError.
      object utf8 =
          reinterpret_steal<object>(PyUnicode_AsUTF8String(src.ptr()));
      if (!utf8)
        throw error_already_set();
      value.bytes.assign(PyBytes_AS_STRING(utf8.ptr()),
                         size_t(PyBytes_GET_SIZE(utf8.ptr())));
      return true;
    }
    if (!PyBytes_Check(src.ptr()))
      return false;
    value.bytes.assign(PyBytes_AS_STRING(src.ptr()),
                       size_t(PyBytes_GET_SIZE(src.ptr())));
    if (int64_t bad = incnn::runtime::findInvalidUtf8(value.bytes); bad >= 0)
      throw value_error("the text is not valid UTF-8 (byte " +
                        std::to_string(bad) + ")");
    return true;
  }
};

} // namespace pybind11::detail

namespace {

/// Threads per Session or Document, as incnn-run and the C API allow.
/// Raised when an input leaves the exactness contract (docs/exactness.md);
/// a subclass of ValueError. The session is unchanged.
PyObject *outOfContractError = nullptr;
/// Raised for a position or length past a bound (an edit outside the
/// document, a result longer than the context); IndexError and ValueError.
PyObject *outOfRangeError = nullptr;
/// Raised when a size limit is exceeded or memory runs out; a ValueError.
PyObject *resourceExhaustedError = nullptr;

/// Raises the Python exception of a runtime status, mapped from its code.
[[noreturn]] void raise(const Status &st) {
  PyObject *type = PyExc_RuntimeError; // Internal, Interrupted
  switch (st.code) {
  case StatusCode::InvalidArgument:
    type = PyExc_ValueError;
    break;
  case StatusCode::OutOfRange:
    type = outOfRangeError;
    break;
  case StatusCode::OutOfContract:
    type = outOfContractError;
    break;
  case StatusCode::ResourceExhausted:
    type = resourceExhaustedError;
    break;
  case StatusCode::IO:
    type = PyExc_OSError;
    break;
  case StatusCode::Ok:
  case StatusCode::Interrupted:
  case StatusCode::Internal:
    break;
  }
  PyErr_SetString(type, st.error.c_str());
  throw py::error_already_set();
}

int checkThreads(int64_t threads) {
  if (threads < 0 || threads > kMaxThreads)
    throw py::value_error("threads must be in [0, " +
                          std::to_string(kMaxThreads) + "] (0: one per core)");
  return int(threads);
}

/// Text that may hold invalid UTF-8 (a tokenizer's pieces), as a str.
py::str lenientStr(const std::string &s) {
  return py::reinterpret_steal<py::str>(
      PyUnicode_DecodeUTF8(s.data(), py::ssize_t(s.size()), "replace"));
}

/// A loaded program, shared by the sessions made from it.
struct PyProgram : std::enable_shared_from_this<PyProgram> {
  Program program;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string path;
};

std::shared_ptr<PyProgram> loadProgramFile(const std::string &path) {
  auto p = std::make_shared<PyProgram>();
  Status st;
  {
    py::gil_scoped_release release;
    st = loadProgram(path, p->program);
  }
  if (!st.ok()) {
    // OSError either way: the file cannot be read or is not a program.
    if (st.is(StatusCode::IO) && access(path.c_str(), R_OK) != 0)
      PyErr_SetFromErrnoWithFilename(PyExc_OSError, path.c_str());
    else
      PyErr_SetString(PyExc_OSError, st.error.c_str());
    throw py::error_already_set();
  }
  if (!p->program.tokenizer.empty()) {
    Status tst = Tokenizer::create(p->program.tokenizer, p->tokenizer);
    if (!tst.ok())
      raise(tst);
  }
  p->path = path;
  return p;
}

#ifdef INCNN_PYTHON_COMPILER
std::shared_ptr<PyProgram> compile(const std::string &modelDir,
                                   std::optional<std::string> output,
                                   std::optional<std::string> vqCalibrate,
                                   std::optional<std::string> vqSites,
                                   const std::string &cachePlan,
                                   int64_t maxPositions, bool verbose) {
  incnn::CompileOptions options;
  options.maxPositions = maxPositions;
  options.modelDir = modelDir;
  options.cachePlan = cachePlan;
  if (vqCalibrate)
    options.calibrationFile = *vqCalibrate;
  if (vqSites)
    options.calibrationSites = *vqSites;
  // Without an output path the program goes to a temporary file that is
  // mapped and then unlinked.
  std::string path;
  if (output) {
    path = *output;
  } else {
    char tmpl[] = "/tmp/incnn-compile-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
      PyErr_SetFromErrno(PyExc_OSError);
      throw py::error_already_set();
    }
    close(fd);
    path = tmpl;
  }
  options.outputPath = path;
  std::vector<std::string> log;
  options.progress = [&](const std::string &m) {
    if (verbose)
      log.push_back(m);
  };
  options.diagnostic = [&](const std::string &m) { log.push_back(m); };
  std::string error;
  {
    py::gil_scoped_release release;
    incnn::CompileResult result;
    error = incnn::compileModel(options, result);
  }
  for (const std::string &line : log)
    py::print("incnn.compile:", line,
              py::arg("file") = py::module_::import("sys").attr("stderr"));
  if (!error.empty()) {
    if (!output)
      std::remove(path.c_str());
    bool missing = access(modelDir.c_str(), R_OK) != 0 ||
                   error.find("cannot read") != std::string::npos ||
                   error.find("cannot open") != std::string::npos;
    PyErr_SetString(missing ? PyExc_OSError : PyExc_ValueError, error.c_str());
    throw py::error_already_set();
  }
  std::shared_ptr<PyProgram> program = loadProgramFile(path);
  if (!output) {
    std::remove(path.c_str()); // the mapping stays valid
    program->path.clear();
  }
  return program;
}
#endif

/// The output as a NumPy array: 1-D, or for a token classifier one row of
/// logits per token.
py::array_t<float> toArray(const PyProgram &p, const std::vector<float> &v) {
  auto size = py::ssize_t(v.size());
  auto width = py::ssize_t(p.program.labels.size());
  py::array_t<float> a = p.program.task == TaskKind::TokenClassifier && width
                             ? py::array_t<float>({size / width, width})
                             : py::array_t<float>(size);
  std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(float));
  return a;
}

/// A JSON value as Python objects (dict keys in the JSON's order).
py::object toPython(const nlohmann::ordered_json &j) {
  switch (j.type()) {
  case nlohmann::ordered_json::value_t::object: {
    py::dict d;
    for (auto it = j.begin(); it != j.end(); ++it)
      d[py::str(it.key())] = toPython(it.value());
    return std::move(d);
  }
  case nlohmann::ordered_json::value_t::array: {
    py::list l;
    for (const auto &e : j)
      l.append(toPython(e));
    return std::move(l);
  }
  case nlohmann::ordered_json::value_t::string:
    return lenientStr(j.get_ref<const std::string &>());
  case nlohmann::ordered_json::value_t::boolean:
    return py::bool_(j.get<bool>());
  case nlohmann::ordered_json::value_t::number_integer:
    return py::int_(j.get<int64_t>());
  case nlohmann::ordered_json::value_t::number_unsigned:
    return py::int_(j.get<uint64_t>());
  case nlohmann::ordered_json::value_t::number_float:
    return py::float_(j.get<double>());
  default:
    return py::none();
  }
}

/// What `.stats` reports, copied out of a session under its lock.
struct StatsCopy {
  EditStats edit;
  int64_t cacheBytes = 0, tokens = 0;
  Document::EditResult last; ///< documents only

  explicit StatsCopy(const Session &s)
      : edit(s.stats()), cacheBytes(s.cacheBytes()),
        tokens(int64_t(s.tokens().size())) {}

  py::dict toDict() const {
    // The keys and values of incnn-run --json's stats (docs/json.md).
    py::dict d = toPython(statsToJson(edit));
    // What the session keeps: bytes in all, and per token (as incnn-run's
    // step 0 reports it).
    d["cache_bytes"] = cacheBytes;
    d["cache_bytes_per_token"] = cacheBytes / std::max<int64_t>(1, tokens);
    return d;
  }
};

/// The label, next token or (token classifiers) list of token labels.
py::object predictionOf(const PyProgram &p, const std::vector<float> &out) {
  const std::vector<std::string> &labels = p.program.labels;
  auto labelName = [&](size_t best) {
    return best < labels.size() ? labels[best] : std::to_string(best);
  };
  if (p.program.task == TaskKind::TokenClassifier) {
    py::list perToken;
    for (size_t label : rowLabels(out, labels.size()))
      perToken.append(labelName(label));
    return std::move(perToken);
  }
  size_t best = argmaxOf(out.data(), out.size());
  if (p.program.task == TaskKind::Classifier)
    return py::str(labelName(best));
  return py::str(p.tokenizer ? p.tokenizer->piece(int32_t(best))
                             : std::to_string(best));
}

/// Token ids from an iterable of integers (not a str, bytes or bytearray),
/// at most `limit` of them.
std::vector<int32_t> tokenList(py::handle tokens, size_t limit) {
  PyObject *o = tokens.ptr();
  if (PyUnicode_Check(o) || PyBytes_Check(o) || PyByteArray_Check(o) ||
      !py::isinstance<py::iterable>(tokens))
    throw py::type_error(std::string("token ids must be an iterable of "
                                     "integers, not ") +
                         Py_TYPE(o)->tp_name);
  std::string tooMany = "more than " + std::to_string(limit) +
                        " token ids (the program's context)";
  if (Py_ssize_t hint = PyObject_LengthHint(o, 0); hint < 0)
    throw py::error_already_set();
  else if (size_t(hint) > limit)
    throw py::value_error(tooMany);
  std::vector<int32_t> ids;
  for (py::handle t : tokens) {
    if (!PyIndex_Check(t.ptr()))
      throw py::type_error(std::string("token ids must be integers, not ") +
                           Py_TYPE(t.ptr())->tp_name);
    int64_t v = toInt64(t, "a token id");
    if (v < INT32_MIN || v > INT32_MAX)
      throw py::value_error("token id " + std::to_string(v) +
                            " is out of range");
    if (ids.size() == limit)
      throw py::value_error(tooMany);
    ids.push_back(int32_t(v));
  }
  return ids;
}

/// A batch from a list of ("replace", at, tokens) / ("insert", at, tokens)
/// / ("delete", at, count) tuples or edits-file dicts ({"op": ...}).
std::vector<TokenEdit> toEdits(const Program &program, const py::list &list) {
  // A snapshot: converting an item may run Python code that changes the list.
  py::tuple items(list);
  if (items.size() > kMaxEditsPerBatch)
    raise(Status::exhausted(std::to_string(items.size()) +
                            " edits in one batch exceed the limit of " +
                            std::to_string(kMaxEditsPerBatch)));
  const size_t maxTokens = size_t(program.maxPositions);
  std::vector<TokenEdit> edits;
  for (size_t i = 0; i < items.size(); ++i) {
    py::handle h = items[i];
    std::string where =
        items.size() > 1 ? "edit " + std::to_string(i) + ": " : "";
    if (py::isinstance<py::dict>(h)) {
      std::string line =
          py::module_::import("json").attr("dumps")(h).cast<std::string>();
      EditLine parsed;
      if (Status st = parseEditLine(line, program.vocabSize, maxTokens, parsed);
          !st.ok())
        raise(st.within(where));
      if (!parsed.textEdits.empty())
        raise(
            Status::invalidArgument(where + "text edits go to Document.edit"));
      edits.insert(edits.end(), parsed.tokenEdits.begin(),
                   parsed.tokenEdits.end());
      continue;
    }
    if (!py::isinstance<py::tuple>(h) || py::len(h) != 3)
      raise(Status::invalidArgument(where +
                                    "an edit is (op, at, tokens), "
                                    "(\"delete\", at, count) or a dict"));
    py::tuple t = py::reinterpret_borrow<py::tuple>(h);
    if (!py::isinstance<py::str>(t[0]))
      throw py::type_error(where + "an edit's op must be a str");
    Py_ssize_t size = 0;
    const char *name = PyUnicode_AsUTF8AndSize(t[0].ptr(), &size);
    if (!name)
      throw py::error_already_set();
    std::string op(name, size_t(size));
    int64_t at = toInt64(t[1], "an edit offset");
    if (op == "replace")
      edits.push_back(TokenEdit::replace(at, tokenList(t[2], maxTokens)));
    else if (op == "insert")
      edits.push_back(TokenEdit::insert(at, tokenList(t[2], maxTokens)));
    else if (op == "delete")
      edits.push_back(TokenEdit::erase(at, toInt64(t[2], "a delete count")));
    else
      raise(Status::invalidArgument(where + "unknown edit op '" + op + "'"));
  }
  return edits;
}

/// The mutex of a Session or Document.
class Locked {
protected:
  /// Runs `f` under the mutex with the GIL released; `f` must not touch
  /// Python objects.
  template <typename F> auto locked(F &&f) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return f();
  }

private:
  std::mutex mutex_;
};

/// Recomputes from scratch and compares every output bit.
bool sameAsFromScratch(const Session &session, int threads) {
  return compareWithFromScratch(session, threads).ok();
}

/// A session and its from-scratch checker, both over one program.
class PySession : Locked {
public:
  PySession(std::shared_ptr<PyProgram> program, int threads, bool certificates)
      : program_(std::move(program)),
        session_(program_->program, SessionOptions{threads, certificates}),
        threads_(threads) {}

  static std::unique_ptr<PySession> create(Ref<PyProgram> program,
                                           const py::iterable &tokens,
                                           Int64 threads, bool certificates) {
    int n = checkThreads(threads);
    std::vector<int32_t> ids =
        tokenList(tokens, size_t(program->program.maxPositions));
    std::shared_ptr<PyProgram> shared = program->shared_from_this();
    std::unique_ptr<PySession> s;
    Status st;
    {
      py::gil_scoped_release release;
      s = std::make_unique<PySession>(std::move(shared), n, certificates);
      st = s->session_.reset(ids);
    }
    if (!st.ok())
      raise(st);
    return s;
  }

  void reset(const py::iterable &tokens) {
    std::vector<int32_t> ids = tokenList(tokens, maxTokens());
    if (Status st = locked([&] { return session_.reset(ids); }); !st.ok())
      raise(st);
  }

  void apply(const py::list &items) {
    applyEdits(toEdits(program_->program, items));
  }

  void applyEdits(const std::vector<TokenEdit> &edits) {
    if (Status st = locked([&] { return session_.apply(edits); }); !st.ok())
      raise(st);
  }

  size_t maxTokens() const { return size_t(program_->program.maxPositions); }

  bool verify() {
    return locked([&] { return sameAsFromScratch(session_, threads_); });
  }

  py::array_t<float> output() {
    return toArray(*program_, locked([&] { return session_.output(); }));
  }
  std::vector<int32_t> tokens() {
    return locked([&] { return session_.tokens(); });
  }
  py::dict stats() {
    return locked([&] { return StatsCopy(session_); }).toDict();
  }
  std::vector<int64_t> changedRows() {
    return locked([&] { return session_.stats().changedOutputRows; });
  }
  py::object prediction() {
    return predictionOf(*program_, locked([&] { return session_.output(); }));
  }
  const std::shared_ptr<PyProgram> &program() const { return program_; }

private:
  std::shared_ptr<PyProgram> program_;
  Session session_;
  int threads_;
};

/// Byte offsets of characters `start` and `end` of UTF-8 `text`, counted as
/// in a Python str (code points); an error when [start, end) is not a range
/// of the text.
Status charRange(const std::string &text, int64_t start, int64_t end,
                 int64_t &startByte, int64_t &endByte) {
  startByte = endByte = -1;
  int64_t chars = 0;
  if (start >= 0 && start <= end)
    for (size_t i = 0; i <= text.size() && endByte < 0; ++i) {
      if (i < text.size() &&
          (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80)
        continue;
      if (chars == start)
        startByte = int64_t(i);
      if (chars == end)
        endByte = int64_t(i);
      ++chars;
    }
  if (startByte >= 0 && endByte >= 0)
    return Status::success();
  int64_t length = 0;
  for (char c : text)
    length += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return Status::outOfRange(
      "character range [" + std::to_string(start) + ", " + std::to_string(end) +
      ") is outside the document of " + std::to_string(length) + " characters");
}

/// A text document over its own session.
class PyDocument : Locked {
public:
  PyDocument(std::shared_ptr<PyProgram> program, int threads, bool certificates)
      : program_(std::move(program)),
        session_(program_->program, SessionOptions{threads, certificates}),
        threads_(threads) {
    std::vector<int32_t> prefix;
    if (program_->program.task == TaskKind::CausalLM &&
        program_->program.bosTokenId >= 0)
      prefix.push_back(program_->program.bosTokenId);
    document_ = std::make_unique<Document>(session_, *program_->tokenizer,
                                           std::move(prefix));
  }

  static std::unique_ptr<PyDocument> create(Ref<PyProgram> program, Text text,
                                            Int64 threads, bool certificates) {
    int n = checkThreads(threads);
    if (!program->tokenizer)
      raise(Status::invalidArgument("the program has no tokenizer"));
    std::shared_ptr<PyProgram> shared = program->shared_from_this();
    std::unique_ptr<PyDocument> d;
    Status st;
    {
      py::gil_scoped_release release;
      d = std::make_unique<PyDocument>(std::move(shared), n, certificates);
      st = d->document_->reset(std::move(text.bytes));
    }
    if (!st.ok())
      raise(st);
    return d;
  }

  /// Tokenizes and evaluates a new text from scratch (the session and its
  /// packed weights are reused).
  void reset(Text text) {
    Status st = locked([&] {
      Status r = document_->reset(std::move(text.bytes));
      if (r.ok())
        last_ = Document::EditResult();
      return r;
    });
    if (!st.ok())
      raise(st);
  }

  /// Replaces UTF-8 bytes [start, end) with `text`.
  void edit(int64_t start, int64_t end, const Text &text) {
    Status st = locked(
        [&] { return document_->applyText(start, end, text.bytes, &last_); });
    if (!st.ok())
      raise(st);
  }

  /// Replaces characters [start, end) of the text as a Python str: the
  /// offsets are found and the edit applied under one hold of the lock.
  void editChars(int64_t start, int64_t end, const Text &text) {
    Status st = locked([&] {
      int64_t startByte, endByte;
      if (Status r =
              charRange(document_->text(), start, end, startByte, endByte);
          !r.ok())
        return r;
      return document_->applyText(startByte, endByte, text.bytes, &last_);
    });
    if (!st.ok())
      raise(st);
  }

  bool verify() {
    return locked([&] {
      return document_->verifyTokens().ok() &&
             sameAsFromScratch(session_, threads_);
    });
  }

  py::str text() {
    return py::str(locked([&] { return document_->text(); }));
  }
  std::vector<int32_t> tokens() {
    return locked([&] { return document_->allTokens(); });
  }
  py::array_t<float> output() {
    return toArray(*program_, locked([&] { return session_.output(); }));
  }
  py::object prediction() {
    return predictionOf(*program_, locked([&] { return session_.output(); }));
  }
  std::vector<int64_t> changedRows() {
    return locked([&] { return session_.stats().changedOutputRows; });
  }
  /// The byte range [start, end) of each token the model sees.
  std::vector<std::pair<int64_t, int64_t>> tokenBytes() {
    return locked([&] {
      std::vector<std::pair<int64_t, int64_t>> ranges(session_.tokens().size());
      for (size_t i = 0; i < ranges.size(); ++i)
        document_->tokenBytes(int64_t(i), ranges[i].first, ranges[i].second);
      return ranges;
    });
  }
  py::dict stats() {
    StatsCopy copy = locked([&] {
      StatsCopy c(session_);
      c.last = last_;
      return c;
    });
    py::dict d = copy.toDict();
    d["tokenize_us"] = copy.last.tokenizeMicros;
    d["retokenized_bytes"] = copy.last.retokenizedBytes;
    d["inside_window"] = copy.last.insideWindow;
    return d;
  }
  const std::shared_ptr<PyProgram> &program() const { return program_; }

private:
  std::shared_ptr<PyProgram> program_;
  Session session_;
  std::unique_ptr<Document> document_;
  Document::EditResult last_;
  int threads_;
};

} // namespace

PYBIND11_MODULE(incnn, m) {
  m.doc() = "incnn: exact incremental inference for vector-quantized "
            "transformers.\n\nCompile a checkpoint with incnn.compile, open "
            "a Session (tokens) or a Document (text) on it, edit, and read "
            "the output: bit for bit what a from-scratch run gives.";
  m.attr("__version__") = "0.1.0";
  m.attr("PROGRAM_FORMAT_VERSION") = kProgramVersion;
  outOfContractError = PyErr_NewExceptionWithDoc(
      "incnn.OutOfContractError",
      "The input's activations leave the exactness contract (non-finite, or "
      "past the attention bounds of docs/exactness.md). The session or "
      "document is unchanged.",
      PyExc_ValueError, nullptr);
  m.attr("OutOfContractError") = py::handle(outOfContractError);
  PyObject *rangeBases = PyTuple_Pack(2, PyExc_IndexError, PyExc_ValueError);
  outOfRangeError = PyErr_NewExceptionWithDoc(
      "incnn.OutOfRangeError",
      "A position or length past a bound: an edit outside the document, a "
      "result longer than the context. An IndexError and a ValueError. The "
      "session or document is unchanged.",
      rangeBases, nullptr);
  Py_XDECREF(rangeBases);
  m.attr("OutOfRangeError") = py::handle(outOfRangeError);
  resourceExhaustedError = PyErr_NewExceptionWithDoc(
      "incnn.ResourceExhaustedError",
      "A size limit was exceeded (a batch of more than 4096 edits, a text "
      "over the byte limit) or memory ran out; a ValueError. After an update "
      "that ran out of memory the session holds no document: reset it.",
      PyExc_ValueError, nullptr);
  m.attr("ResourceExhaustedError") = py::handle(resourceExhaustedError);

  py::class_<Tokenizer>(m, "Tokenizer",
                        "The program's sentencepiece tokenizer.")
      .def(
          "encode",
          [](Ref<Tokenizer> t, const Text &text) {
            if (text.bytes.size() > kMaxTextBytes)
              throw py::value_error("text of " +
                                    std::to_string(text.bytes.size()) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(kMaxTextBytes));
            std::vector<int32_t> ids;
            Status st;
            {
              py::gil_scoped_release release;
              st = t->encode(text.bytes, ids);
            }
            if (!st.ok())
              raise(st);
            return ids;
          },
          py::arg("text"), "Token ids of `text` (no BOS).")
      .def(
          "decode",
          [](Ref<Tokenizer> t, const py::iterable &ids) {
            std::string text;
            if (Status st = t->decode(tokenList(ids, kMaxTextBytes), text);
                !st.ok())
              raise(st);
            return lenientStr(text);
          },
          py::arg("ids"), "The text of token ids.")
      .def(
          "piece",
          [](Ref<Tokenizer> t, Int64 id) {
            return lenientStr(id < 0 || id > INT32_MAX ? std::string()
                                                       : t->piece(int32_t(id)));
          },
          py::arg("id"), "The piece string of one id ('' when out of range).")
      .def_property_readonly("vocab_size",
                             [](Ref<Tokenizer> t) { return t->vocabSize(); });

  py::class_<PyProgram, std::shared_ptr<PyProgram>>(
      m, "Program",
      "A compiled incnn program (memory-mapped; shared by every session "
      "made from it).")
      .def_static("load", &loadProgramFile, py::arg("path"),
                  "Loads a .incnn file (OSError if it cannot be read or is "
                  "not a valid program).")
      .def_property_readonly("labels",
                             [](Ref<PyProgram> p) { return p->program.labels; })
      .def_property_readonly(
          "vocab_size", [](Ref<PyProgram> p) { return p->program.vocabSize; })
      .def_property_readonly(
          "max_positions",
          [](Ref<PyProgram> p) { return p->program.maxPositions; })
      .def_property_readonly(
          "task", [](Ref<PyProgram> p) { return taskName(p->program.task); })
      .def_property_readonly(
          "output_size",
          [](Ref<PyProgram> p) {
            return p->program.values[size_t(p->program.outputValue)].width;
          })
      .def_property_readonly(
          "tokenizer",
          [](Ref<PyProgram> p) -> const Tokenizer * {
            return p->tokenizer.get();
          },
          py::return_value_policy::reference_internal,
          "The Tokenizer, or None when the program has none.")
      .def_property_readonly(
          "path", [](Ref<PyProgram> p) { return p->path; },
          "The file it was loaded from ('' for an in-memory compile).")
      .def("__repr__", [](Ref<PyProgram> p) {
        return std::string("<incnn.Program ") + taskName(p->program.task) +
               ", " + std::to_string(p->program.instrs.size()) +
               " instructions, " + std::to_string(p->program.maxPositions) +
               " positions>";
      });

  const char *compileDoc =
      "Compiles a checkpoint directory (config.json + model.safetensors "
      "[+ tokenizer.model]) with the same pipeline as incnn-compile. "
      "Writes `output` when given (else a temporary file), and returns the "
      "loaded Program. vq_calibrate: a text file for k-means VQ codebooks "
      "of a dense checkpoint; vq_sites: LAYER:SITE:GROUPS:CODES,...; "
      "cache_plan: 'minimal' or 'all'; max_positions: a longer context "
      "window for models without learned positions. Compiler warnings go "
      "to stderr.";
#ifdef INCNN_PYTHON_COMPILER
  m.def("compile", &compile, py::arg("model_dir"),
        py::arg("output") = py::none(), py::kw_only(),
        py::arg("vq_calibrate") = py::none(), py::arg("vq_sites") = py::none(),
        py::arg("cache_plan") = "minimal", py::arg("max_positions") = 0,
        py::arg("verbose") = false, compileDoc);
#else
  m.def(
      "compile",
      [](const py::args &, const py::kwargs &) {
        throw std::runtime_error(
            "incnn.compile is unavailable: this module was built without the "
            "compiler (INCNN_BUILD_COMPILER=OFF); compile with incnn-compile "
            "and use incnn.Program.load");
      },
      compileDoc);
#endif

  py::class_<PySession>(
      m, "Session",
      "Incremental evaluation of one token sequence. Edits update the output "
      "at a cost proportional to what changed; the result equals a "
      "from-scratch run bit for bit. A rejected edit (ValueError, or "
      "OutOfContractError) leaves the session as it was. Calls release the "
      "GIL; one session serves one call at a time.")
      .def(py::init(&PySession::create), py::arg("program").none(false),
           py::arg("tokens"), py::kw_only(), py::arg("threads") = 1,
           py::arg("vq_certificates") = true)
      .def(
          "reset",
          [](Ref<PySession> s, const py::iterable &tokens) {
            s->reset(tokens);
          },
          py::arg("tokens"), "Evaluates a new token sequence from scratch.")
      .def(
          "replace",
          [](Ref<PySession> s, Int64 at, const py::iterable &tokens) {
            s->applyEdits(
                {TokenEdit::replace(at, tokenList(tokens, s->maxTokens()))});
          },
          py::arg("at"), py::arg("tokens"))
      .def(
          "insert",
          [](Ref<PySession> s, Int64 at, const py::iterable &tokens) {
            s->applyEdits(
                {TokenEdit::insert(at, tokenList(tokens, s->maxTokens()))});
          },
          py::arg("at"), py::arg("tokens"))
      .def(
          "delete",
          [](Ref<PySession> s, Int64 at, Int64 count) {
            s->applyEdits({TokenEdit::erase(at, count)});
          },
          py::arg("at"), py::arg("count") = 1)
      .def(
          "apply",
          [](Ref<PySession> s, const py::list &edits) { s->apply(edits); },
          py::arg("edits"),
          "Applies a list of at most 4096 edits as one batch: tuples "
          "(\"replace\", at, tokens), (\"insert\", at, tokens), (\"delete\", "
          "at, count), or edits-file dicts {\"op\": ..., ...}.")
      .def_property_readonly(
          "output", [](Ref<PySession> s) { return s->output(); },
          "The output as a new float32 NumPy array (a copy: the session's "
          "buffer moves on the next edit); a token classifier's is 2-D, one "
          "row of logits per token.")
      .def_property_readonly(
          "changed_rows", [](Ref<PySession> s) { return s->changedRows(); },
          "Rows of the output that changed in the last update (new tokens "
          "and rows whose logits changed in any bit; every row after reset), "
          "ascending. Token classifiers only; empty otherwise.")
      .def_property_readonly("tokens",
                             [](Ref<PySession> s) { return s->tokens(); })
      .def_property_readonly(
          "stats", [](Ref<PySession> s) { return s->stats(); },
          "The last update's statistics, with the keys of incnn-run --json "
          "(plus cache_bytes).")
      .def_property_readonly(
          "prediction", [](Ref<PySession> s) { return s->prediction(); },
          "The label (classifier), the next token (causal LM) or a list of "
          "each token's label (token classifier).")
      .def_property_readonly("program",
                             [](Ref<PySession> s) { return s->program(); })
      .def(
          "verify", [](Ref<PySession> s) { return s->verify(); },
          "Recomputes from scratch; True if every output bit is equal.");

  py::class_<PyDocument>(
      m, "Document",
      "A text document over a session: byte-range text edits are "
      "re-tokenized and applied incrementally. The model sees the first "
      "max_positions tokens. Calls release the GIL; one document serves one "
      "call at a time.")
      .def(py::init(&PyDocument::create), py::arg("program").none(false),
           py::arg("text"), py::kw_only(), py::arg("threads") = 1,
           py::arg("vq_certificates") = true)
      .def(
          "reset",
          [](Ref<PyDocument> d, Text text) { d->reset(std::move(text)); },
          py::arg("text"),
          "Replaces the whole text, evaluated from scratch (cheaper than a "
          "new Document: the session is reused).")
      .def(
          "edit",
          [](Ref<PyDocument> d, Int64 start, Int64 end, const Text &text) {
            d->edit(start, end, text);
          },
          py::arg("start"), py::arg("end"), py::arg("text"),
          "Replaces UTF-8 bytes [start, end) of the text (offsets must lie "
          "on character boundaries).")
      .def(
          "edit_chars",
          [](Ref<PyDocument> d, Int64 start, Int64 end, const Text &text) {
            d->editChars(start, end, text);
          },
          py::arg("start"), py::arg("end"), py::arg("text"),
          "Replaces characters [start, end) of the text, counted as in a "
          "Python str.")
      .def_property_readonly("text",
                             [](Ref<PyDocument> d) { return d->text(); })
      .def_property_readonly("tokens",
                             [](Ref<PyDocument> d) { return d->tokens(); })
      .def_property_readonly("output",
                             [](Ref<PyDocument> d) { return d->output(); })
      .def_property_readonly(
          "changed_rows", [](Ref<PyDocument> d) { return d->changedRows(); },
          "As Session.changed_rows: rows whose output the last edit changed.")
      .def_property_readonly(
          "token_bytes", [](Ref<PyDocument> d) { return d->tokenBytes(); },
          "The UTF-8 byte range (start, end) of each token the model sees.")
      .def_property_readonly("prediction",
                             [](Ref<PyDocument> d) { return d->prediction(); })
      .def_property_readonly(
          "stats", [](Ref<PyDocument> d) { return d->stats(); },
          "The last edit's statistics (incnn-run --json keys, plus "
          "tokenize_us, retokenized_bytes and inside_window).")
      .def_property_readonly("program",
                             [](Ref<PyDocument> d) { return d->program(); })
      .def(
          "verify", [](Ref<PyDocument> d) { return d->verify(); },
          "True if the tokens equal a full re-tokenization and the output "
          "equals a from-scratch run bit for bit.");
}
