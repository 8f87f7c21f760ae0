# bpf_object(name src): compiles bpf/<src> with clang -target bpf, turns the object into a
# skeleton header with `bpftool gen skeleton`, and exposes both as the INTERFACE target
# <name>_skel that C++ targets link to (#include "<name>.skel.h", struct <name>_bpf).
# After libbpf-bootstrap's function of the same name.

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
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o)
  set(skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${ZMESH_BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${ZMESH_BPF_ARCH}
            -Wall -Werror -I${ZMESH_VMLINUX_DIR} -I${CMAKE_SOURCE_DIR}/bpf
            -MD -MF ${obj}.d -c ${CMAKE_CURRENT_SOURCE_DIR}/${src} -o ${obj}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${src}
    DEPFILE ${obj}.d
    COMMENT "BPF ${src}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${ZMESH_BPFTOOL} gen skeleton ${obj} > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${obj}
    COMMENT "BPF skeleton ${name}.skel.h")
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  target_include_directories(${name}_skel SYSTEM INTERFACE ${CMAKE_CURRENT_BINARY_DIR}
                                                          ${CMAKE_SOURCE_DIR}/bpf)
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
  add_dependencies(${name}_skel ${name}_skel_gen)
endfunction()
