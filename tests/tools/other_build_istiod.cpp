// A module with the entry point of istiod's client (userspace/xds/istiod.h) that offers no
// interface version zmeshd asks for: what a zmesh-istiod.so of another build looks like to
// zmeshd. xds_test installs it where zmeshd looks and checks that it is refused, not called.
extern "C" __attribute__((visibility("default"))) const void* zmesh_istiod(int /*interface_version*/) { return nullptr; }
