# 32-bit ARM, hard float (Debian armhf: ARMv7 with VFPv3-D16; Raspberry Pi OS 32-bit on a
# Pi 2 and later) with Debian's cross toolchain:
# cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-armhf.cmake (see cross-debian.cmake).
# size_t and long are 32 bits here; file offsets are 64 bits only with _FILE_OFFSET_BITS=64,
# which CMakeLists.txt sets for every build (and 64-bit time_t is not glibc 2.36's default).
set(CMAKE_SYSTEM_PROCESSOR arm)
set(GALAXY_CROSS_TRIPLET arm-linux-gnueabihf)
set(GALAXY_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/cross-debian.cmake)
