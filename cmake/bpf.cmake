# bpf_object(name src [VARIANT dir DEFINES def...]): compiles bpf/<src> with clang -target bpf,
# turns the object into a skeleton header with `bpftool gen skeleton`, and exposes both as the
# INTERFACE target <name>_skel that C++ targets link to (#include "<name>.skel.h", struct
# <name>_bpf). With VARIANT, the same object built with DEFINES into <dir>/, as the target
# <name>_<dir>_skel with the same header and struct names (a second build of the datapath for
# tests). After libbpf-bootstrap's function of the same name.

find_program(ZMESH_BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(ZMESH_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(ZMESH_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(ZMESH_BPF_ARCH arm64)
else()
  message(FATAL_ERROR "zmesh: no BPF target arch for ${CMAKE_SYSTEM_PROCESSOR}")
endif()

# vmlinux.h: every kernel type, from the running kernel's BTF. Made once at configure time
# (the kernel does not change under a build); CO-RE relocates field offsets at load.
set(ZMESH_VMLINUX_DIR ${CMAKE_BINARY_DIR}/bpf/vmlinux)
set(ZMESH_VMLINUX_BTF /sys/kernel/btf/vmlinux CACHE FILEPATH "kernel BTF that vmlinux.h is made from")
if(NOT EXISTS ${ZMESH_VMLINUX_DIR}/vmlinux.h)
  if(NOT EXISTS ${ZMESH_VMLINUX_BTF})
    message(FATAL_ERROR "zmesh: ${ZMESH_VMLINUX_BTF} is missing: zmesh needs a kernel with BTF "
                        "(CONFIG_DEBUG_INFO_BTF=y)")
  endif()
  file(MAKE_DIRECTORY ${ZMESH_VMLINUX_DIR})
  execute_process(
    COMMAND ${ZMESH_BPFTOOL} btf dump file ${ZMESH_VMLINUX_BTF} format c
    OUTPUT_FILE ${ZMESH_VMLINUX_DIR}/vmlinux.h.tmp
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "zmesh: bpftool btf dump of ${ZMESH_VMLINUX_BTF} failed (${rc})")
  endif()
  file(RENAME ${ZMESH_VMLINUX_DIR}/vmlinux.h.tmp ${ZMESH_VMLINUX_DIR}/vmlinux.h)
endif()

function(bpf_object name src)
  cmake_parse_arguments(B "" "VARIANT" "DEFINES" ${ARGN})
  set(dir ${CMAKE_CURRENT_BINARY_DIR})
  set(target ${name})
  set(defines "")
  if(B_VARIANT)
    set(dir ${CMAKE_CURRENT_BINARY_DIR}/${B_VARIANT})
    set(target ${name}_${B_VARIANT})
    foreach(def ${B_DEFINES})
      list(APPEND defines -D${def})
    endforeach()
    file(MAKE_DIRECTORY ${dir})
  endif()
  set(obj ${dir}/${name}.bpf.o)
  set(skel ${dir}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${ZMESH_BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${ZMESH_BPF_ARCH} ${defines}
            -Wall -Werror -I${ZMESH_VMLINUX_DIR} -I${CMAKE_SOURCE_DIR}/bpf
            -MD -MF ${obj}.d -c ${CMAKE_CURRENT_SOURCE_DIR}/${src} -o ${obj}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${src}
    DEPFILE ${obj}.d
    COMMENT "BPF ${src} ${B_VARIANT}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${ZMESH_BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${obj}
    COMMENT "BPF skeleton ${B_VARIANT}/${name}.skel.h")
  add_custom_target(${target}_skel_gen DEPENDS ${skel})
  add_library(${target}_skel INTERFACE)
  target_include_directories(${target}_skel SYSTEM INTERFACE ${dir} ${CMAKE_SOURCE_DIR}/bpf)
  target_link_libraries(${target}_skel INTERFACE PkgConfig::LIBBPF)
  add_dependencies(${target}_skel ${target}_skel_gen)
endfunction()
