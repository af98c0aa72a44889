//===- Serialize.cpp - incnn's JSON: floats, edit statistics --------------===//
#include "incnn/runtime/Serialize.h"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string_view>

namespace incnn::runtime {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

json jsonFloat(float x) {
  if (!std::isfinite(x))
    return nullptr;
  return double(x);
}

json floatsToJson(const std::vector<float> &values) {
  json a = json::array();
  a.get_ref<json::array_t &>().reserve(values.size());
  for (float x : values)
    a.push_back(jsonFloat(x));
  return a;
}

size_t argmaxOf(const float *values, size_t width) {
  size_t best = 0;
  for (size_t i = 1; i < width; ++i)
    if (values[i] > values[best])
      best = i;
  return best;
}

std::vector<size_t> rowLabels(const std::vector<float> &output, size_t width) {
  std::vector<size_t> labels;
  for (size_t i = 0; width && i + width <= output.size(); i += width)
    labels.push_back(argmaxOf(output.data() + i, width));
  return labels;
}

json outputToJson(const Session &session) {
  const Program &program = session.program();
  const std::vector<float> &out = session.output();
  const ValueInfo &value = program.values[size_t(program.outputValue)];
  if (!value.perToken)
    return floatsToJson(out);
  size_t width = size_t(value.width);
  json rows = json::array();
  rows.get_ref<json::array_t &>().reserve(out.size() / width);
  for (size_t i = 0; i + width <= out.size(); i += width) {
    json row = json::array();
    for (size_t j = 0; j < width; ++j)
      row.push_back(jsonFloat(out[i + j]));
    rows.push_back(std::move(row));
  }
  return rows;
}

namespace {

/// Appends `text`, with ".0" where it would read as an integer.
void appendText(std::string &out, std::string_view text) {
  out += text;
  if (text.find_first_of(".e") == std::string_view::npos)
    out += ".0";
}

/// Appends the shortest form of a double (std::to_chars: the shortest
/// digits that parse back to the same value).
void appendNumber(std::string &out, double x) {
  if (!std::isfinite(x)) {
    out += "null";
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  appendText(out, std::string_view(buf, size_t(r.ptr - buf)));
}

/// True if `text` read as a double and rounded to float32 (what a JSON
/// reader does) gives `x`'s bits.
bool survivesDouble(std::string_view text, float x) {
  double d = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), d);
  float y = float(d);
  return r.ec == std::errc() && std::memcmp(&x, &y, sizeof x) == 0;
}

/// Significant digits of a decimal (leading and trailing zeros of the
/// mantissa dropped).
size_t significantDigits(std::string_view text) {
  text = text.substr(0, text.find('e'));
  size_t first = text.find_first_of("123456789");
  if (first == std::string_view::npos)
    return 1;
  size_t last = text.find_last_of("123456789");
  size_t dot = text.find('.');
  return last - first + 1 - (dot > first && dot < last ? 1 : 0);
}

/// Appends the shortest decimal that parses back to `x`, also through a
/// double. std::to_chars' shortest float32 digits parse back as a float32
/// but, read as a double and then rounded, give a neighbour for a few
/// values (7.038531e-26: the double nearest to it lies on the other side of
/// the float32 midpoint): those get more digits.
void appendNumber(std::string &out, float x) {
  if (!std::isfinite(x)) {
    out += "null";
    return;
  }
  char buf[64], sci[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  std::string_view text(buf, size_t(r.ptr - buf));
  // A large integer in fixed notation has its exact digits (-2015707136000):
  // the scientific form has the shortest ones (-2.0157071e+12).
  if (text.find_first_of(".e") == std::string_view::npos) {
    auto s =
        std::to_chars(sci, sci + sizeof sci, x, std::chars_format::scientific);
    std::string_view alt(sci, size_t(s.ptr - sci));
    if (significantDigits(alt) < significantDigits(text))
      text = alt;
  }
  for (int precision = 1; !survivesDouble(text, x); ++precision) {
    if (precision > 9) { // 17 digits: the double's exact value
      appendNumber(out, double(x));
      return;
    }
    r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::general,
                      precision);
    text = std::string_view(buf, size_t(r.ptr - buf));
  }
  appendText(out, text);
}

template <typename J> void dumpTo(std::string &out, const J &v) {
  switch (v.type()) {
  case nlohmann::detail::value_t::object: {
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first)
        out += ',';
      first = false;
      out += J(it.key()).dump(-1, ' ', false, J::error_handler_t::replace);
      out += ':';
      dumpTo(out, it.value());
    }
    out += '}';
    return;
  }
  case nlohmann::detail::value_t::array: {
    out += '[';
    bool first = true;
    for (const J &e : v) {
      if (!first)
        out += ',';
      first = false;
      dumpTo(out, e);
    }
    out += ']';
    return;
  }
  case nlohmann::detail::value_t::number_float: {
    double d = v.template get<double>();
    // A float32's exact value prints in float32's shortest form; any other
    // double in its own.
    if (std::fabs(d) <= double(FLT_MAX) && double(float(d)) == d)
      appendNumber(out, float(d));
    else
      appendNumber(out, d);
    return;
  }
  default:
    out += v.dump(-1, ' ', false, J::error_handler_t::replace);
    return;
  }
}

} // namespace

std::string formatFloat(float x) {
  std::string out;
  appendNumber(out, x);
  return out;
}

ordered_json statsToJson(const EditStats &s) {
  ordered_json r;
  r["macs"] = s.macs;
  r["macs_full"] = s.macsFull;
  r["tokens"] = s.numTokens;
  r["dirty_rows"] = s.dirtyRows;
  r["updated_rows"] = s.updatedRows;
  r["code_flips"] = s.codeFlips;
  r["certified_rows"] = s.certifiedRows;
  r["deferred_rows"] = s.deferredRows;
  r["recomputed_rows"] = int64_t(s.recomputedRows.size());
  r["state_bytes"] = s.stateBytes;
  auto tenths = [](double micros) { return std::round(micros * 10) / 10; };
  r["us"] = tenths(s.micros);
  ordered_json steps = ordered_json::array();
  for (double micros : s.stepMicros)
    steps.push_back(tenths(micros));
  r["step_us"] = std::move(steps);
  ordered_json layers = ordered_json::array();
  for (const AttentionMicros &t : s.attentionMicros)
    layers.push_back({{"plan", tenths(t.plan)},
                      {"delta_terms", tenths(t.deltaTerms)},
                      {"full_rows", tenths(t.fullRows)}});
  r["attention_us"] = std::move(layers);
  return r;
}

std::string dumpJson(const json &value) {
  std::string out;
  dumpTo(out, value);
  return out;
}

std::string dumpJson(const ordered_json &value) {
  std::string out;
  dumpTo(out, value);
  return out;
}

} // namespace incnn::runtime
