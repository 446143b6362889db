# Cross builds on Debian 12 with its cross toolchains and multiarch libraries, included by
# toolchain-arm64.cmake and toolchain-armhf.cmake, which set GALAXY_CROSS_TRIPLET (the GNU
# triplet: aarch64-linux-gnu, arm-linux-gnueabihf) and GALAXY_CROSS_QEMU (qemu-aarch64,
# qemu-arm) first. scripts/cross-deps.sh ARCH DIR installs what it uses:
#   - the compilers TRIPLET-gcc/g++ (crossbuild-essential-ARCH), the same GCC 12 as the
#     native build's;
#   - every library but MUNGE as Debian's multiarch packages (libfmt-dev:ARCH, ...), in
#     /usr/lib/TRIPLET, which the cross compilers and CMake search by themselves once
#     CMAKE_LIBRARY_ARCHITECTURE names the triplet;
#   - MUNGE (libmunge-dev and libmunge2 have no Multi-Arch field, so they cannot be
#     installed beside the amd64 ones that munged needs) unpacked into a directory of its
#     own, GALAXY_CROSS_SYSROOT, whose munge.pc names its absolute paths.
# Cache variable: GALAXY_CROSS_SYSROOT (default: BUILD_DIR/sysroot), that directory.
#
# pkg-config is the native one, told where the target's .pc files are (PKG_CONFIG_LIBDIR
# replaces its amd64 search path, so nothing of amd64 can be found by mistake).
#
# When qemu-user-static is installed, CMAKE_CROSSCOMPILING_EMULATOR is its interpreter:
# gtest_discover_tests then lists a test binary's tests through it at build time, and
# ctest runs the tests through it (the programs that the tests start, such as
# galaxy-node, run through binfmt_misc: scripts/cross-deps.sh --emulation).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${GALAXY_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${GALAXY_CROSS_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${GALAXY_CROSS_TRIPLET})
# -Wno-psabi: GCC's ARM notes that passing some structures changed in GCC 7.1, at every
# std::vector<uint64_t> iterator; everything here is built by GCC 12.
set(CMAKE_CXX_FLAGS_INIT -Wno-psabi)

# CMAKE_BINARY_DIR is the build tree when the toolchain file is first read. try_compile
# projects read the file again, in the same process, in a directory of their own: they
# need neither MUNGE nor pkg-config, and must not point pkg-config (the process's
# environment) at their directory.
get_property(galaxy_in_try_compile GLOBAL PROPERTY IN_TRY_COMPILE)
if(NOT galaxy_in_try_compile)
  set(GALAXY_CROSS_SYSROOT "${CMAKE_BINARY_DIR}/sysroot" CACHE PATH
    "Where scripts/cross-deps.sh unpacked libmunge-dev and libmunge2 for ${GALAXY_CROSS_TRIPLET}")
  set(ENV{PKG_CONFIG_LIBDIR}
    "${GALAXY_CROSS_SYSROOT}/usr/lib/${GALAXY_CROSS_TRIPLET}/pkgconfig:/usr/lib/${GALAXY_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
  set(ENV{PKG_CONFIG_PATH} "")
endif()

find_program(GALAXY_CROSS_EMULATOR NAMES ${GALAXY_CROSS_QEMU}-static ${GALAXY_CROSS_QEMU})
if(GALAXY_CROSS_EMULATOR)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${GALAXY_CROSS_EMULATOR})
endif()
