//===- incnn_module.cpp - Python bindings: `import incnn` -----------------===//
//
// pybind11 bindings over the runtime (Program, Tokenizer, Session, Document)
// and the compiler driver (incnn.compile). Evaluation and updates release
// the GIL; each Session/Document is used by one thread at a time (a mutex
// per object makes concurrent calls on one object wait).
//
//===----------------------------------------------------------------------===//
#include "incnn/Compiler/Driver.h"
#include "incnn/runtime/Document.h"
#include "incnn/runtime/EditLine.h"
#include "incnn/runtime/Program.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Tokenizer.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <unistd.h>

namespace py = pybind11;
using namespace incnn::runtime;

namespace {

/// Raised when an input leaves the exactness contract (docs/exactness.md);
/// a subclass of ValueError. The session is unchanged.
PyObject *outOfContractError = nullptr;

[[noreturn]] void raise(const Status &st) {
  if (st.outsideContract)
    PyErr_SetString(outOfContractError, st.error.c_str());
  else
    PyErr_SetString(PyExc_ValueError, st.error.c_str());
  throw py::error_already_set();
}

/// A loaded program, shared by the sessions made from it.
struct PyProgram {
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
    if (access(path.c_str(), R_OK) != 0)
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

py::array_t<float> toArray(const std::vector<float> &v) {
  py::array_t<float> a(py::ssize_t(v.size()));
  std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(float));
  return a;
}

py::dict statsDict(const EditStats &st) {
  py::dict d;
  d["macs"] = st.macs;
  d["macs_full"] = st.macsFull;
  d["dirty_rows"] = st.dirtyRows;
  d["updated_rows"] = st.updatedRows;
  d["code_flips"] = st.codeFlips;
  d["certified_rows"] = st.certifiedRows;
  d["us"] = st.micros;
  return d;
}

/// What the session keeps: bytes in all, and per token (as incnn-run's
/// step 0 reports it).
void addCacheStats(py::dict &d, const Session &s) {
  d["cache_bytes"] = s.cacheBytes();
  d["cache_bytes_per_token"] =
      s.cacheBytes() / std::max<int64_t>(1, int64_t(s.tokens().size()));
}

std::string predictionOf(const Program &program, const Tokenizer *tokenizer,
                         const std::vector<float> &out) {
  size_t best = 0;
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i] > out[best])
      best = i;
  if (program.task == TaskKind::Classifier)
    return best < program.labels.size() ? program.labels[best]
                                        : std::to_string(best);
  return tokenizer ? tokenizer->piece(int32_t(best)) : std::to_string(best);
}

std::vector<int32_t> tokenList(const py::iterable &tokens) {
  std::vector<int32_t> ids;
  for (py::handle t : tokens) {
    if (!py::isinstance<py::int_>(t))
      throw py::type_error("token ids must be integers");
    long long v = t.cast<long long>();
    if (v < INT32_MIN || v > INT32_MAX)
      throw py::value_error("token id " + std::to_string(v) +
                            " is out of range");
    ids.push_back(int32_t(v));
  }
  return ids;
}

/// A batch from a list of ("replace", at, tokens) / ("insert", at, tokens)
/// / ("delete", at, count) tuples or edits-file dicts ({"op": ...}).
std::vector<TokenEdit> toEdits(const Program &program, const py::list &items) {
  std::vector<TokenEdit> edits;
  for (size_t i = 0; i < items.size(); ++i) {
    py::handle h = items[i];
    std::string where =
        items.size() > 1 ? "edit " + std::to_string(i) + ": " : "";
    if (py::isinstance<py::dict>(h)) {
      std::string line =
          py::module_::import("json").attr("dumps")(h).cast<std::string>();
      EditLine parsed;
      if (Status st = parseEditLine(line, program.vocabSize,
                                    size_t(program.maxPositions), parsed);
          !st.ok())
        raise(Status::failure(where + st.error));
      if (!parsed.textEdits.empty())
        raise(Status::failure(where + "text edits go to Document.edit"));
      edits.insert(edits.end(), parsed.tokenEdits.begin(),
                   parsed.tokenEdits.end());
      continue;
    }
    if (!py::isinstance<py::tuple>(h) || py::len(h) != 3)
      raise(Status::failure(where + "an edit is (op, at, tokens), "
                                    "(\"delete\", at, count) or a dict"));
    py::tuple t = h.cast<py::tuple>();
    std::string op = t[0].cast<std::string>();
    int64_t at = t[1].cast<int64_t>();
    if (op == "replace")
      edits.push_back(TokenEdit::replace(at, tokenList(t[2])));
    else if (op == "insert")
      edits.push_back(TokenEdit::insert(at, tokenList(t[2])));
    else if (op == "delete")
      edits.push_back(TokenEdit::erase(at, t[2].cast<int64_t>()));
    else
      raise(Status::failure(where + "unknown edit op '" + op + "'"));
  }
  return edits;
}

/// A session and its from-scratch checker, both over one program.
class PySession {
public:
  PySession(std::shared_ptr<PyProgram> program, const py::iterable &tokens,
            int threads, bool certificates)
      : program_(std::move(program)),
        session_(program_->program, SessionOptions{threads, certificates}),
        threads_(threads) {
    reset(tokens);
  }

  void reset(const py::iterable &tokens) {
    std::vector<int32_t> ids = tokenList(tokens);
    Status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      st = session_.reset(ids);
    }
    if (!st.ok())
      raise(st);
  }

  void apply(const py::list &items) {
    std::vector<TokenEdit> edits = toEdits(program_->program, items);
    applyEdits(edits);
  }

  void applyEdits(const std::vector<TokenEdit> &edits) {
    Status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      st = session_.apply(edits);
    }
    if (!st.ok())
      raise(st);
  }

  /// Recomputes from scratch and compares every output bit.
  bool verify() {
    std::lock_guard<std::mutex> lock(mutex_);
    py::gil_scoped_release release;
    return sameAsFromScratch(session_, threads_);
  }

  static bool sameAsFromScratch(const Session &session, int threads) {
    Evaluator oracle(session.program(), EvaluatorOptions{threads});
    if (!oracle.evaluate(session.tokens()).ok())
      return false;
    const std::vector<float> &a = session.output(), &b = oracle.output();
    return a.size() == b.size() &&
           std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }

  py::dict stats() const {
    py::dict d = statsDict(session_.stats());
    addCacheStats(d, session_);
    return d;
  }

  Session &session() { return session_; }
  const Session &session() const { return session_; }
  const std::shared_ptr<PyProgram> &program() const { return program_; }
  std::mutex &mutex() { return mutex_; }
  int threads() const { return threads_; }

private:
  std::shared_ptr<PyProgram> program_;
  Session session_;
  int threads_;
  std::mutex mutex_;
};

/// A text document over its own session.
class PyDocument {
public:
  PyDocument(std::shared_ptr<PyProgram> program, std::string text, int threads,
             bool certificates)
      : program_(std::move(program)),
        session_(program_->program, SessionOptions{threads, certificates}),
        threads_(threads) {
    if (!program_->tokenizer)
      raise(Status::failure("the program has no tokenizer"));
    std::vector<int32_t> prefix;
    if (program_->program.task == TaskKind::CausalLM &&
        program_->program.bosTokenId >= 0)
      prefix.push_back(program_->program.bosTokenId);
    document_ = std::make_unique<Document>(session_, *program_->tokenizer,
                                           std::move(prefix));
    Status st;
    {
      py::gil_scoped_release release;
      st = document_->reset(std::move(text));
    }
    if (!st.ok())
      raise(st);
  }

  /// Tokenizes and evaluates a new text from scratch (the session and its
  /// packed weights are reused).
  void reset(std::string text) {
    Status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      st = document_->reset(std::move(text));
      last_ = Document::EditResult();
    }
    if (!st.ok())
      raise(st);
  }

  /// Replaces UTF-8 bytes [start, end) with `text`.
  void edit(int64_t start, int64_t end, const std::string &text) {
    Status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      st = document_->applyText(start, end, text, &last_);
    }
    if (!st.ok())
      raise(st);
  }

  /// Replaces characters [start, end) of the text as a Python str.
  void editChars(int64_t start, int64_t end, const std::string &text) {
    const std::string &bytes = document_->text();
    int64_t length = 0;
    std::vector<int64_t> offsets; // byte offset of each character, then end
    for (size_t i = 0; i < bytes.size(); ++i)
      if ((static_cast<unsigned char>(bytes[i]) & 0xC0) != 0x80)
        offsets.push_back(int64_t(i));
    offsets.push_back(int64_t(bytes.size()));
    length = int64_t(offsets.size()) - 1;
    if (start < 0 || end < start || end > length)
      raise(Status::failure("character range [" + std::to_string(start) + ", " +
                            std::to_string(end) +
                            ") is outside the document of " +
                            std::to_string(length) + " characters"));
    edit(offsets[size_t(start)], offsets[size_t(end)], text);
  }

  bool verify() {
    std::lock_guard<std::mutex> lock(mutex_);
    py::gil_scoped_release release;
    return document_->verifyTokens().ok() &&
           PySession::sameAsFromScratch(session_, threads_);
  }

  py::dict stats() const {
    py::dict d = statsDict(session_.stats());
    d["tokenize_us"] = last_.tokenizeMicros;
    d["retokenized_bytes"] = last_.retokenizedBytes;
    d["inside_window"] = last_.insideWindow;
    addCacheStats(d, session_);
    return d;
  }

  const Document &document() const { return *document_; }
  const Session &session() const { return session_; }
  const std::shared_ptr<PyProgram> &program() const { return program_; }

private:
  std::shared_ptr<PyProgram> program_;
  Session session_;
  std::unique_ptr<Document> document_;
  Document::EditResult last_;
  int threads_;
  std::mutex mutex_;
};

std::string taskName(TaskKind task) {
  return task == TaskKind::Classifier ? "classifier" : "causal_lm";
}

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

  py::class_<Tokenizer>(m, "Tokenizer",
                        "The program's sentencepiece tokenizer.")
      .def(
          "encode",
          [](const Tokenizer &t, const std::string &text) {
            std::vector<int32_t> ids;
            Status st;
            {
              py::gil_scoped_release release;
              st = t.encode(text, ids);
            }
            if (!st.ok())
              raise(st);
            return ids;
          },
          py::arg("text"), "Token ids of `text` (no BOS).")
      .def(
          "decode",
          [](const Tokenizer &t, const py::iterable &ids) {
            std::string text;
            if (Status st = t.decode(tokenList(ids), text); !st.ok())
              raise(st);
            return py::bytes(text).attr("decode")("utf-8", "replace");
          },
          py::arg("ids"), "The text of token ids.")
      .def("piece", &Tokenizer::piece, py::arg("id"),
           "The piece string of one id ('' when out of range).")
      .def_property_readonly("vocab_size", &Tokenizer::vocabSize);

  py::class_<PyProgram, std::shared_ptr<PyProgram>>(
      m, "Program",
      "A compiled incnn program (memory-mapped; shared by every session "
      "made from it).")
      .def_static("load", &loadProgramFile, py::arg("path"),
                  "Loads a .incnn file (OSError if it cannot be read or is "
                  "not a valid program).")
      .def_property_readonly(
          "labels", [](const PyProgram &p) { return p.program.labels; })
      .def_property_readonly(
          "vocab_size", [](const PyProgram &p) { return p.program.vocabSize; })
      .def_property_readonly(
          "max_positions",
          [](const PyProgram &p) { return p.program.maxPositions; })
      .def_property_readonly(
          "task", [](const PyProgram &p) { return taskName(p.program.task); })
      .def_property_readonly(
          "output_size",
          [](const PyProgram &p) {
            return p.program.values[size_t(p.program.outputValue)].width;
          })
      .def_property_readonly(
          "tokenizer",
          [](const PyProgram &p) -> const Tokenizer * {
            return p.tokenizer.get();
          },
          py::return_value_policy::reference_internal,
          "The Tokenizer, or None when the program has none.")
      .def_property_readonly(
          "path", [](const PyProgram &p) { return p.path; },
          "The file it was loaded from ('' for an in-memory compile).")
      .def("__repr__", [](const PyProgram &p) {
        return "<incnn.Program " + taskName(p.program.task) + ", " +
               std::to_string(p.program.instrs.size()) + " instructions, " +
               std::to_string(p.program.maxPositions) + " positions>";
      });

  m.def("compile", &compile, py::arg("model_dir"),
        py::arg("output") = py::none(), py::kw_only(),
        py::arg("vq_calibrate") = py::none(), py::arg("vq_sites") = py::none(),
        py::arg("cache_plan") = "minimal", py::arg("max_positions") = 0,
        py::arg("verbose") = false,
        "Compiles a checkpoint directory (config.json + model.safetensors "
        "[+ tokenizer.model]) with the same pipeline as incnn-compile. "
        "Writes `output` when given (else a temporary file), and returns the "
        "loaded Program. vq_calibrate: a text file for k-means VQ codebooks "
        "of a dense checkpoint; vq_sites: LAYER:SITE:GROUPS:CODES,...; "
        "cache_plan: 'minimal' or 'all'; max_positions: a longer context "
        "window for models without learned positions. Compiler warnings go "
        "to stderr.");

  py::class_<PySession>(
      m, "Session",
      "Incremental evaluation of one token sequence. Edits update the output "
      "at a cost proportional to what changed; the result equals a "
      "from-scratch run bit for bit. A rejected edit (ValueError, or "
      "OutOfContractError) leaves the session as it was. Calls release the "
      "GIL; one session serves one call at a time.")
      .def(py::init<std::shared_ptr<PyProgram>, const py::iterable &, int,
                    bool>(),
           py::arg("program"), py::arg("tokens"), py::kw_only(),
           py::arg("threads") = 1, py::arg("vq_certificates") = true)
      .def("reset", &PySession::reset, py::arg("tokens"),
           "Evaluates a new token sequence from scratch.")
      .def(
          "replace",
          [](PySession &s, int64_t at, const py::iterable &tokens) {
            s.applyEdits({TokenEdit::replace(at, tokenList(tokens))});
          },
          py::arg("at"), py::arg("tokens"))
      .def(
          "insert",
          [](PySession &s, int64_t at, const py::iterable &tokens) {
            s.applyEdits({TokenEdit::insert(at, tokenList(tokens))});
          },
          py::arg("at"), py::arg("tokens"))
      .def(
          "delete",
          [](PySession &s, int64_t at, int64_t count) {
            s.applyEdits({TokenEdit::erase(at, count)});
          },
          py::arg("at"), py::arg("count") = 1)
      .def("apply", &PySession::apply, py::arg("edits"),
           "Applies a list of edits as one batch: tuples (\"replace\", at, "
           "tokens), (\"insert\", at, tokens), (\"delete\", at, count), or "
           "edits-file dicts {\"op\": ..., ...}.")
      .def_property_readonly(
          "output",
          [](const PySession &s) { return toArray(s.session().output()); },
          "The output as a new float32 NumPy array (a copy: the session's "
          "buffer moves on the next edit).")
      .def_property_readonly(
          "tokens", [](const PySession &s) { return s.session().tokens(); })
      .def_property_readonly("stats", &PySession::stats,
                             "The last update's statistics, with the keys of "
                             "incnn-run --json (plus cache_bytes).")
      .def_property_readonly("prediction",
                             [](const PySession &s) {
                               return predictionOf(s.program()->program,
                                                   s.program()->tokenizer.get(),
                                                   s.session().output());
                             })
      .def_property_readonly("program", &PySession::program)
      .def("verify", &PySession::verify,
           "Recomputes from scratch; True if every output bit is equal.");

  py::class_<PyDocument>(
      m, "Document",
      "A text document over a session: byte-range text edits are "
      "re-tokenized and applied incrementally. The model sees the first "
      "max_positions tokens.")
      .def(py::init<std::shared_ptr<PyProgram>, std::string, int, bool>(),
           py::arg("program"), py::arg("text"), py::kw_only(),
           py::arg("threads") = 1, py::arg("vq_certificates") = true)
      .def("reset", &PyDocument::reset, py::arg("text"),
           "Replaces the whole text, evaluated from scratch (cheaper than a "
           "new Document: the session is reused).")
      .def("edit", &PyDocument::edit, py::arg("start"), py::arg("end"),
           py::arg("text"),
           "Replaces UTF-8 bytes [start, end) of the text (offsets must lie "
           "on character boundaries).")
      .def("edit_chars", &PyDocument::editChars, py::arg("start"),
           py::arg("end"), py::arg("text"),
           "Replaces characters [start, end) of the text, counted as in a "
           "Python str.")
      .def_property_readonly(
          "text",
          [](const PyDocument &d) {
            return py::bytes(d.document().text()).attr("decode")("utf-8");
          })
      .def_property_readonly(
          "tokens",
          [](const PyDocument &d) { return d.document().allTokens(); })
      .def_property_readonly(
          "output",
          [](const PyDocument &d) { return toArray(d.session().output()); })
      .def_property_readonly("prediction",
                             [](const PyDocument &d) {
                               return predictionOf(d.program()->program,
                                                   d.program()->tokenizer.get(),
                                                   d.session().output());
                             })
      .def_property_readonly("stats", &PyDocument::stats,
                             "The last edit's statistics (incnn-run --json "
                             "keys, plus tokenize_us, retokenized_bytes and "
                             "inside_window).")
      .def_property_readonly("program", &PyDocument::program)
      .def("verify", &PyDocument::verify,
           "True if the tokens equal a full re-tokenization and the output "
           "equals a from-scratch run bit for bit.");
}
