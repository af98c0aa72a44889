#===- cmake/Packaging.cmake - install layout, package config, .deb ---------===#
#
# Included at the end of the top-level CMakeLists.txt. Install components:
#   runtime  libincnn_runtime.so.0 (-> .so.0.1.0)
#   dev      headers, libincnn_runtime.so, libincnn_runtime.a,
#            lib/cmake/incnn/incnnConfig*.cmake + incnnTargets*.cmake,
#            lib/pkgconfig/incnn.pc
#   tools    incnn-run, incnn-bench, incnn-serve (+ incnn-compile, incnn-opt
#            when the compiler is built)
# `cpack -G DEB` makes one package of each (docs/install.md).
#
#===------------------------------------------------------------------------===#

include(CMakePackageConfigHelpers)

set(INCNN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/incnn)
install(EXPORT incnnTargets NAMESPACE incnn:: DESTINATION ${INCNN_CMAKE_DIR}
        COMPONENT dev)
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/incnnConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/incnnConfig.cmake
  INSTALL_DESTINATION ${INCNN_CMAKE_DIR})
# 0.x: a new minor version may break the API.
write_basic_package_version_file(
  ${CMAKE_BINARY_DIR}/cmake/incnnConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/incnnConfig.cmake
              ${CMAKE_BINARY_DIR}/cmake/incnnConfigVersion.cmake
        DESTINATION ${INCNN_CMAKE_DIR} COMPONENT dev)

# incnn.pc holds the prefix it is installed under (`cmake --install --prefix`,
# or /usr in the .deb): written at install time from a template configured
# here, one scratch copy per prefix.
set(INCNN_PC_PREFIX "@CMAKE_INSTALL_PREFIX@") # substituted at install time
configure_file(${CMAKE_CURRENT_LIST_DIR}/incnn.pc.in
               ${CMAKE_BINARY_DIR}/cmake/incnn.pc.install @ONLY)
install(CODE "
  string(MD5 _incnn_pc_dir \"\${CMAKE_INSTALL_PREFIX}\")
  set(_incnn_pc \"${CMAKE_BINARY_DIR}/cmake/pc-\${_incnn_pc_dir}/incnn.pc\")
  configure_file(\"${CMAKE_BINARY_DIR}/cmake/incnn.pc.install\" \"\${_incnn_pc}\" @ONLY)
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\"
       TYPE FILE FILES \"\${_incnn_pc}\")
" COMPONENT dev)

# Debian packages: libincnn-runtime0, libincnn-dev, incnn-tools.
set(CPACK_PACKAGE_NAME incnn)
set(CPACK_PACKAGE_VENDOR "incnn")
set(CPACK_PACKAGE_CONTACT "incnn maintainers <incnn@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Install with CMAKE_INSTALL_PREFIX=/usr into a DESTDIR, so that incnn.pc
# says /usr and not the staging directory.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
# Depends on shared libraries from dpkg-shlibdeps (libc6, libstdc++6,
# libsentencepiece0, and libllvm19 for the compiler tools).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(_incnn_deb_version "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libincnn-runtime0)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
# shlibs (libincnn_runtime 0 libincnn-runtime0 (>= 0.1.0-1)) and ldconfig in
# postinst/postrm, for the one package with a shared library.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
    "exact incremental transformer inference (shared library)
libincnn_runtime.so.0 loads programs compiled by incnn-compile and updates
their output after token or text edits, bit for bit what a from-scratch run
gives. C and C++ APIs.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libincnn-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# The static library links libsentencepiece (its Libs.private).
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libincnn-runtime0 (= ${_incnn_deb_version}), libsentencepiece-dev")
set(CPACK_DEBIAN_DEV_DESCRIPTION
    "exact incremental transformer inference (development files)
Headers (the C API incnn/runtime/incnn.h and the C++ API), the static
library, the CMake package (find_package(incnn): incnn::runtime,
incnn::runtime_static) and the pkg-config file (incnn.pc).")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME incnn-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION science)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION
    "exact incremental transformer inference (command-line tools)
incnn-run, incnn-bench and incnn-serve (HTTP, documents kept live); with the
compiler, incnn-compile (checkpoint to program) and incnn-opt.")

include(CPack)
