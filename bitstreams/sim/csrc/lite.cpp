// The lite board top-level (`LiteBoardTop`) behind the same C ABI as
// board.cpp, with functions prefixed `hl_`.
#define HB_MODEL Vlite
#define HB_HEADER "Vlite.h"
#define HB(name) hl_##name
#include "board.cpp"
