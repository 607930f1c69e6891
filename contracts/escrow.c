/* placeholder: the escrow program lands in the next commit */
#include "escrow_idl.h"
typedef unsigned long long uint64_t;
uint64_t entrypoint(const unsigned char *input) {
  (void)input;
  return 6000 + 20; /* ERR_BAD_INSTRUCTION_DATA */
}
