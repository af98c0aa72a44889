//===- ToolOptions.h - the command line of incnn's runtime tools -*- C++
//-*-===//
//
// One argument parser (CLI11) with the conventions every tool shares
// (incnn-run, incnn-bench, incnn-serve):
//
//   * `--help` (`-h`) prints the usage and the options to stdout, `--version`
//     prints "TOOL VERSION" (the project's version); both exit 0;
//   * a bad command line prints "TOOL: error: MESSAGE", the usage line and a
//     hint to stderr and exits with status 2 (unknown options, stray
//     arguments, missing or malformed values, values out of range);
//   * `--threads N`: kernel threads, 0 (one per core) to kMaxThreads (1024),
//     with the same help text everywhere;
//   * integers are decimal (no 0x or leading-zero octal), and an option given
//     twice keeps its last value.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_TOOLS_TOOLOPTIONS_H
#define INCNN_TOOLS_TOOLOPTIONS_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
class Option;
} // namespace CLI

namespace incnn::tools {

/// The project version ("0.1.0"), as `--version` prints it.
const char *version();

class ToolCli {
public:
  /// `tool`: the program's name in messages; `synopsis`: the usage line
  /// after the name; `description`: what --help prints first.
  ToolCli(std::string tool, std::string synopsis, std::string description);
  ~ToolCli();
  ToolCli(const ToolCli &) = delete;
  ToolCli &operator=(const ToolCli &) = delete;

  /// The model file, the one positional argument (checked by parse()).
  CLI::Option *addModel(std::string &path);
  /// `--threads N` in [0, 1024] (0: one per core).
  CLI::Option *addThreads(int &threads);
  /// An option with a value.
  CLI::Option *addString(const std::string &name, std::string &value,
                         const std::string &help,
                         const std::string &valueName = "FILE");
  /// An option that may be repeated, each time with one value.
  CLI::Option *addStrings(const std::string &name,
                          std::vector<std::string> &values,
                          const std::string &help,
                          const std::string &valueName);
  /// A decimal integer in [lo, hi].
  CLI::Option *addInt(const std::string &name, int64_t &value, int64_t lo,
                      int64_t hi, const std::string &help,
                      const std::string &valueName = "N");
  CLI::Option *addInt(const std::string &name, int &value, int64_t lo,
                      int64_t hi, const std::string &help,
                      const std::string &valueName = "N");
  /// A number of seconds in [lo, hi].
  CLI::Option *addSeconds(const std::string &name, double &value, double lo,
                          double hi, const std::string &help);
  /// One of `choices`.
  CLI::Option *addChoice(const std::string &name, std::string &value,
                         const std::vector<std::string> &choices,
                         const std::string &help);
  /// A flag without a value.
  CLI::Option *addFlag(const std::string &name, bool &value,
                       const std::string &help);
  /// `--json`, a flag: JSON output (`help` says what is printed).
  CLI::Option *addJsonFlag(bool &value, const std::string &help);

  /// Parses the command line. Returns after a successful parse; exits 0
  /// after --help or --version and 2 on a bad command line.
  void parse(int argc, char **argv);

  /// True if the option was on the command line.
  bool given(const std::string &name) const;

  /// A usage error found after parsing (options that do not go together):
  /// prints like parse() and exits 2.
  [[noreturn]] void usageError(const std::string &message) const;

  /// "TOOL: error: MESSAGE" on stderr (no usage), for errors that are not
  /// about the command line.
  void printError(const std::string &message) const;

  const std::string &tool() const { return tool_; }
  CLI::App &app() { return *app_; }

private:
  std::string tool_, synopsis_;
  std::unique_ptr<CLI::App> app_;
  std::string *model_ = nullptr;
};

} // namespace incnn::tools

#endif // INCNN_TOOLS_TOOLOPTIONS_H
