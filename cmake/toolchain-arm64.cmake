# 64-bit ARM (Debian arm64; Raspberry Pi OS 64-bit, Pi 3 and later) with Debian's cross
# toolchain: cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-arm64.cmake (see cross-debian.cmake).
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(GALAXY_CROSS_TRIPLET aarch64-linux-gnu)
set(GALAXY_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/cross-debian.cmake)
