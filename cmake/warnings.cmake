# zmesh_warnings(target): our own code builds with every warning as an error; third-party
# headers come in as SYSTEM includes and are not held to it.
function(zmesh_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wshadow -Wnon-virtual-dtor)
endfunction()
