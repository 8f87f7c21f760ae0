# zmesh_warnings(target): our own code builds with every warning as an error; third-party
# headers come in as SYSTEM includes and are not held to it.
# GCC 12 misreads Asio's coroutine frame allocator (awaitable_frame_base's sized operator
# delete) in some coroutine shapes and calls it a mismatch; ASan, which checks the real
# pairing, runs on the whole suite (make sanitize).
function(zmesh_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wshadow -Wnon-virtual-dtor
                                           $<$<CXX_COMPILER_ID:GNU>:-Wno-mismatched-new-delete>)
endfunction()
