#pragma once
// --version for every Galaxy program (galaxy, galaxy-node, galaxy-sched, galaxy-ramfs), from one place:
// the version and git description that CMake wrote into galaxy_version.hpp at configure
// time (target galaxy_version in CMakeLists.txt).
#include <CLI/CLI.hpp>
#include <string>
#include <string_view>

#include "galaxy_version.hpp"

namespace ctl {

// "galaxy-node 0.1.0 (git 1a2b3c4)", "galaxy 0.1.0 (git unknown)".
inline std::string version_line(std::string_view program) {
  return std::string(program) + " " + galaxy_version + " (git " + galaxy_git + ")";
}

// Adds --version to app: it prints version_line(program) on standard output and exits 0
// (CLI11's CallForVersion, which CLI11_PARSE and app.exit() handle).
inline void add_version_flag(CLI::App& app, std::string_view program) {
  app.set_version_flag("--version", version_line(program), "print the version and exit");
}

}  // namespace ctl
