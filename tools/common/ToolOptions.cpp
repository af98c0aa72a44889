//===- ToolOptions.cpp - the command line of incnn's runtime tools --------===//
#include "ToolOptions.h"

#include "incnn/runtime/Limits.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <sstream>

#ifndef INCNN_VERSION
#error "INCNN_VERSION must be defined (tools/common/CMakeLists.txt)"
#endif

namespace incnn::tools {

const char *version() { return INCNN_VERSION; }

namespace {

/// --help: the usage line first, then the description and the options.
class HelpFormatter : public CLI::Formatter {
public:
  explicit HelpFormatter(std::string usage) : usage_(std::move(usage)) {
    label("Positionals", "Arguments");
    column_width(26);
  }
  std::string make_usage(const CLI::App *, std::string) const override {
    return "usage: " + usage_ + "\n";
  }
  std::string make_help(const CLI::App *app, std::string name,
                        CLI::AppFormatMode mode) const override {
    return make_usage(app, name) + "\n" + make_description(app) +
           make_positionals(app) + make_groups(app, mode) + "\n" +
           make_footer(app);
  }

  /// Word-wraps the description to the terminal's 80 columns; format_help
  /// indents the lines after the first.
  std::string make_option_desc(const CLI::Option *opt) const override {
    std::string text = CLI::Formatter::make_option_desc(opt), out, line;
    size_t width =
        kColumns > get_column_width() + 20 ? kColumns - get_column_width() : 20;
    std::istringstream words(text);
    std::string word;
    while (words >> word) {
      if (!line.empty() && line.size() + 1 + word.size() > width) {
        out += line + "\n";
        line.clear();
      }
      line += (line.empty() ? "" : " ") + word;
    }
    return out + line;
  }

private:
  static constexpr size_t kColumns = 79;
  std::string usage_;
};

std::string shortNumber(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

/// "an integer in [0, 1024]", "a non-negative integer".
std::string integerRange(int64_t lo, int64_t hi) {
  if (hi < INT64_MAX)
    return "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
           "]";
  return lo == 0 ? "a non-negative integer"
                 : "an integer of at least " + std::to_string(lo);
}

bool parseInteger(const std::string &text, int64_t &out) {
  const char *end = text.data() + text.size();
  auto r = std::from_chars(text.data(), end, out);
  return r.ec == std::errc() && r.ptr == end;
}

CLI::Option *integerOption(CLI::App &app, const std::string &name,
                           std::function<void(int64_t)> store, int64_t lo,
                           int64_t hi, const std::string &help,
                           const std::string &valueName) {
  auto parse = [name, store, lo, hi](const std::string &text) {
    int64_t x = 0;
    if (!parseInteger(text, x) || x < lo || x > hi)
      throw CLI::ValidationError(name, "expected " + integerRange(lo, hi) +
                                           ", got '" + text + "'");
    store(x);
  };
  return app.add_option_function<std::string>(name, parse, help)
      ->type_name(valueName);
}

} // namespace

ToolCli::ToolCli(std::string tool, std::string synopsis,
                 std::string description)
    : tool_(std::move(tool)), synopsis_(tool_ + " " + synopsis),
      app_(std::make_unique<CLI::App>(std::move(description), tool_)) {
  app_->formatter(std::make_shared<HelpFormatter>(synopsis_));
  // Unknown options and stray arguments are reported by parse(), in the
  // tools' words.
  app_->allow_extras();
  // An option given twice keeps its last value (repeatable ones all).
  app_->option_defaults()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);
  app_->set_help_flag("-h,--help", "print this help and exit");
  app_->set_version_flag("--version", tool_ + " " + version(),
                         "print the version and exit");
}

ToolCli::~ToolCli() = default;

CLI::Option *ToolCli::addModel(std::string &path) {
  model_ = &path;
  return app_->add_option("MODEL.incnn", path, "the compiled program")
      ->type_name("");
}

CLI::Option *ToolCli::addThreads(int &threads) {
  return addInt("--threads", threads, 0, runtime::kMaxThreads,
                "kernel threads of each evaluation (0: one per core; at most " +
                    std::to_string(runtime::kMaxThreads) + "; default " +
                    std::to_string(threads) + ")");
}

CLI::Option *ToolCli::addString(const std::string &name, std::string &value,
                                const std::string &help,
                                const std::string &valueName) {
  return app_->add_option(name, value, help)->type_name(valueName);
}

CLI::Option *ToolCli::addStrings(const std::string &name,
                                 std::vector<std::string> &values,
                                 const std::string &help,
                                 const std::string &valueName) {
  return app_->add_option(name, values, help)
      ->type_name(valueName)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

CLI::Option *ToolCli::addInt(const std::string &name, int64_t &value,
                             int64_t lo, int64_t hi, const std::string &help,
                             const std::string &valueName) {
  return integerOption(
      *app_, name, [&value](int64_t x) { value = x; }, lo, hi, help, valueName);
}

CLI::Option *ToolCli::addInt(const std::string &name, int &value, int64_t lo,
                             int64_t hi, const std::string &help,
                             const std::string &valueName) {
  return integerOption(
      *app_, name, [&value](int64_t x) { value = int(x); }, lo, hi, help,
      valueName);
}

CLI::Option *ToolCli::addSeconds(const std::string &name, double &value,
                                 double lo, double hi,
                                 const std::string &help) {
  auto parse = [name, &value, lo, hi](const std::string &text) {
    char *end = nullptr;
    double x = std::strtod(text.c_str(), &end);
    if (text.empty() || *end || !(x >= lo && x <= hi))
      throw CLI::ValidationError(
          name, "expected a number of seconds in [" + shortNumber(lo) + ", " +
                    shortNumber(hi) + "], got '" + text + "'");
    value = x;
  };
  return app_->add_option_function<std::string>(name, parse, help)
      ->type_name("S");
}

CLI::Option *ToolCli::addChoice(const std::string &name, std::string &value,
                                const std::vector<std::string> &choices,
                                const std::string &help) {
  std::string names;
  for (size_t i = 0; i < choices.size(); ++i)
    names += (i ? (i + 1 == choices.size() ? " or " : ", ") : "") +
             ("'" + choices[i] + "'");
  auto parse = [name, &value, choices, names](const std::string &text) {
    if (std::find(choices.begin(), choices.end(), text) == choices.end())
      throw CLI::ValidationError(name,
                                 "expected " + names + ", got '" + text + "'");
    value = text;
  };
  std::string typeName;
  for (const std::string &c : choices)
    typeName += (typeName.empty() ? "" : "|") + c;
  return app_->add_option_function<std::string>(name, parse, help)
      ->type_name(typeName);
}

CLI::Option *ToolCli::addFlag(const std::string &name, bool &value,
                              const std::string &help) {
  return app_->add_flag(name, value, help);
}

CLI::Option *ToolCli::addJsonFlag(bool &value, const std::string &help) {
  return addFlag("--json", value, help);
}

void ToolCli::parse(int argc, char **argv) {
  try {
    app_->parse(argc, argv);
  } catch (const CLI::CallForHelp &) {
    std::cout << app_->help();
    std::exit(0);
  } catch (const CLI::CallForVersion &e) {
    std::cout << e.what() << "\n";
    std::exit(0);
  } catch (const CLI::ParseError &e) {
    std::string message = e.what();
    // "--port: 1 required P missing": the option was last, without a value.
    if (dynamic_cast<const CLI::ArgumentMismatch *>(&e) && message.size() > 8 &&
        message.compare(message.size() - 8, 8, " missing") == 0)
      message = message.substr(0, message.find(':')) + " needs a value";
    usageError(message);
  }
  for (const std::string &arg : app_->remaining()) {
    if (arg == "--")
      continue;
    if (arg.size() > 1 && arg[0] == '-')
      usageError("unknown option " + arg.substr(0, arg.find('=')));
    usageError("unexpected argument '" + arg + "'");
  }
  if (model_ && model_->empty())
    usageError("no model file given");
}

bool ToolCli::given(const std::string &name) const {
  return app_->count(name) > 0;
}

void ToolCli::usageError(const std::string &message) const {
  std::cout.flush();
  printError(message);
  std::cerr << "usage: " << synopsis_ << "\n(" << tool_
            << " --help lists the options)\n";
  std::exit(2);
}

void ToolCli::printError(const std::string &message) const {
  std::cerr << tool_ << ": error: " << message << "\n";
}

} // namespace incnn::tools
