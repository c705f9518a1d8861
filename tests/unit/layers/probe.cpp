// Compiled with one layer's include paths and PROBE_HEADER set to a header
// (layers.cmake): a header of a higher layer must not be found.
#include PROBE_HEADER
