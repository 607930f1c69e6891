/* Solana SBPF v0 runtime interface for a freestanding C program (upstream LLVM BPF).
 *
 * Written from the documented ABI: the aligned input serialization of the BPF loaders
 * 2 and 3, the C CPI structs of `sol_invoke_signed_c`, and the syscalls used here.
 * Syscalls are plain extern functions: the relinker turns each call into `call -1`
 * plus a dynamic relocation the loader resolves by name.
 *
 * Rules for code including this header (see SBPF.md): no libcalls (large copies go
 * through sol_memcpy_), no mutable globals, no structs by value across calls, at most
 * five arguments, and instruction data is unaligned (read it bytewise).
 */
#ifndef DGPU_SBPF_H
#define DGPU_SBPF_H

typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)
#define INT64_MAX 0x7fffffffffffffffLL
#define UINT64_MAX 0xffffffffffffffffULL

/* Built-in program errors are (index << 32); a custom error N is N itself. */
#define SUCCESS 0ULL
#define ERROR_INVALID_ARGUMENT (3ULL << 32)
#define ERROR_NOT_ENOUGH_ACCOUNT_KEYS (11ULL << 32)

#define MAX_PERMITTED_DATA_INCREASE (10 * 1024)
#define NON_DUP_MARKER 0xff
#define HEAP_START ((uint8_t *)0x300000000ULL) /* 32 KiB, zeroed at entry */

typedef struct {
  uint8_t bytes[32];
} Pubkey;

/* Layout fixed by the runtime's C ABI (SolAccountInfo). */
typedef struct {
  Pubkey *key;
  uint64_t *lamports;
  uint64_t data_len;
  uint8_t *data;
  Pubkey *owner;
  uint64_t rent_epoch;
  bool is_signer;
  bool is_writable;
  bool executable;
} AccountInfo;

typedef struct {
  const Pubkey *pubkey;
  bool is_writable;
  bool is_signer;
} AccountMeta;

typedef struct {
  const Pubkey *program_id;
  const AccountMeta *accounts;
  uint64_t account_len;
  const uint8_t *data;
  uint64_t data_len;
} Instruction;

typedef struct {
  const uint8_t *addr;
  uint64_t len;
} SignerSeed;

typedef struct {
  const SignerSeed *addr;
  uint64_t len;
} SignerSeeds;

typedef struct {
  uint64_t slot;
  int64_t epoch_start_timestamp;
  uint64_t epoch;
  uint64_t leader_schedule_epoch;
  int64_t unix_timestamp;
} Clock;

typedef struct {
  uint64_t lamports_per_byte_year;
  uint64_t exemption_threshold_f64_bits; /* an f64; no floats in the VM, compare bits */
  uint8_t burn_percent;
} Rent;

/* ---- syscalls ---- */
extern void sol_log_(const char *message, uint64_t len);
extern void sol_log_64_(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
extern uint64_t sol_invoke_signed_c(const Instruction *ix, const AccountInfo *infos,
                                    int infos_len, const SignerSeeds *signers,
                                    int signers_len);
extern uint64_t sol_try_find_program_address(const SignerSeed *seeds, int seeds_len,
                                             const Pubkey *program_id, Pubkey *address,
                                             uint8_t *bump);
extern void sol_memcpy_(void *dst, const void *src, uint64_t n);
extern void sol_memset_(void *dst, uint8_t value, uint64_t n);
extern void sol_memcmp_(const void *a, const void *b, uint64_t n, int32_t *result);
extern uint64_t sol_get_clock_sysvar(Clock *clock);
extern uint64_t sol_get_rent_sysvar(Rent *rent);

#define LOG(text) sol_log_((text), sizeof(text) - 1)

/* ---- memory helpers (never let LLVM emit memcpy/memcmp libcalls) ---- */
static inline bool bytes_eq(const void *a, const void *b, uint64_t n) {
  int32_t result = 1;
  sol_memcmp_(a, b, n, &result);
  return result == 0;
}

/* Both pointers 8-byte aligned: account keys, owners and account data are. */
static inline bool key_eq(const Pubkey *a, const Pubkey *b) {
  const uint64_t *x = (const uint64_t *)a, *y = (const uint64_t *)b;
  return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

static inline uint16_t load_u16(const uint8_t *p) {
  return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}

static inline uint64_t load_u64(const uint8_t *p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; i--) value = (value << 8) | p[i];
  return value;
}

static inline void store_u64(uint8_t *p, uint64_t value) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(value >> (8 * i));
}

/* ---- entrypoint input (aligned serialization of loaders 2 and 3) ---- */
typedef struct {
  AccountInfo *accounts;
  uint64_t accounts_len;
  const uint8_t *data;
  uint64_t data_len;
  const Pubkey *program_id; /* unaligned: follows the instruction data */
} Input;

static inline bool deserialize(const uint8_t *input, Input *in, uint64_t capacity) {
  uint64_t count = *(const uint64_t *)input;
  input += 8;
  if (count > capacity) return false;
  in->accounts_len = count;
  for (uint64_t i = 0; i < count; i++) {
    uint8_t dup = *input++;
    if (dup != NON_DUP_MARKER) {
      in->accounts[i] = in->accounts[dup];
      input += 7;
      continue;
    }
    AccountInfo *account = &in->accounts[i];
    account->is_signer = input[0] != 0;
    account->is_writable = input[1] != 0;
    account->executable = input[2] != 0;
    input += 7; /* three flags and four bytes of padding */
    account->key = (Pubkey *)input;
    input += 32;
    account->owner = (Pubkey *)input;
    input += 32;
    account->lamports = (uint64_t *)input;
    input += 8;
    account->data_len = *(const uint64_t *)input;
    input += 8;
    account->data = (uint8_t *)input;
    input += account->data_len + MAX_PERMITTED_DATA_INCREASE;
    input = (const uint8_t *)(((uint64_t)input + 7) & ~7ULL);
    account->rent_epoch = *(const uint64_t *)input;
    input += 8;
  }
  in->data_len = *(const uint64_t *)input;
  input += 8;
  in->data = input;
  in->program_id = (const Pubkey *)(input + in->data_len);
  return true;
}

/* The serialized data length, which a CPI that resizes the account (create) updates. */
static inline uint64_t current_data_len(const AccountInfo *account) {
  return *(const uint64_t *)(account->data - 8);
}

#endif
