// Errors that name the offending argument and what was expected, so bad input is a clear message, never a crash.
#pragma once
#include <stdexcept>
#include <string>

namespace gg {

// Thrown for any invalid user input (shapes, ranks, dtypes, names, files). The CLI maps it to exit code 2 and the
// Python binding to gradguard.InputError (a ValueError).
class InputError : public std::invalid_argument {
 public:
  InputError(std::string argument, std::string expected, std::string got)
      : std::invalid_argument("argument '" + argument + "': expected " + expected + ", got " + got),
        argument_(std::move(argument)) {}
  const std::string& argument() const { return argument_; }

 private:
  std::string argument_;
};

// Thrown when a requested combination exists in the registry but is not implemented (e.g. a backend/dtype pair).
class NotImplemented : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace gg
