/* dgpu escrow: payment channels settled by renter-signed cumulative receipts.
 *
 * Anchor wire conventions: 8-byte instruction discriminators sha256("global:<name>")[:8],
 * 8-byte account discriminators sha256("account:<Name>")[:8], borsh arguments and account
 * layouts; the IDL is idl.json and escrow_idl.h is generated from it by build.py.
 *
 * Accounts
 *   Config  PDA ["config"]: admin, settler, treasury, mint allow-list, fee, dispute window,
 *           and the channel counter that gives every opening a fresh nonce.
 *   Channel PDA ["channel", renter, provider, channel_id u64 LE]: the terms, the deposit and
 *           the settled high-water mark; deleted when the channel closes.
 *   vault   PDA ["vault", channel]: an SPL token account whose owner is the channel PDA.
 *
 * Money rules: the provider receives (cumulative - settled) minus the fee, never more than
 * the renter signed nor than the deposit; fees accrue in the vault and reach the treasury
 * when the channel closes; whatever else the vault holds goes back to the renter.
 *
 * Receipt (dgpu.protocol.receipt), 64 bytes:
 *   tag "dgpu/v1/receipt\0" (16) | channel (32) | open_nonce u64 LE | cumulative u64 LE.
 *   Verified by the Ed25519 precompile; this program introspects it. The channel is a PDA
 *   of this program (checked by load_channel), which binds the receipt to this program.
 */
#include "sbpf.h"
#include "escrow_idl.h"

#define MAX_ACCOUNTS 64
/* Account layout version, the byte after the bumps. 0: accounts written before the byte
 * existed (it was reserved and zero), whose layout is this one; 1: this program. A later
 * program that changes a layout raises it and can tell the accounts apart; this one
 * refuses accounts of a version it does not know rather than misread them. */
#define LAYOUT_VERSION 1
#define MAX_MINTS 4
#define MAX_FEE_BPS 10000
#define MAX_DISPUTE_WINDOW (10LL * 365 * 24 * 3600)
#define TOKEN_ACCOUNT_LEN 165
#define TOKEN_AMOUNT_OFFSET 64
#define TOKEN_STATE_OFFSET 108
#define TOKEN_STATE_INITIALIZED 1
#define RECEIPT_LEN 64
#define SIGNATURE_OFFSETS_LEN 14
#define ACCOUNT_STORAGE_OVERHEAD 128
#define F64_ONE_BITS 0x3ff0000000000000ULL
#define F64_TWO_BITS 0x4000000000000000ULL
/* UpgradeableLoaderState::ProgramData (bincode): u32 tag 3 | u64 slot | Option<Pubkey>
 * (1 tag byte + 32) | ELF. The authority's offsets are unaligned: compare bytewise. */
#define PROGRAM_DATA_TAG 3
#define PROGRAM_DATA_AUTHORITY_SET 12
#define PROGRAM_DATA_AUTHORITY 13
#define PROGRAM_DATA_META_LEN 45

static const Pubkey SYSTEM_PROGRAM = {{0}};
static const Pubkey TOKEN_PROGRAM = {{6, 221, 246, 225, 215, 101, 161, 147, 217, 203, 225, 70,
                                      206, 235, 121, 172, 28, 180, 133, 237, 95, 91, 55, 145,
                                      58, 140, 245, 133, 126, 255, 0, 169}};
static const Pubkey ED25519_PROGRAM = {{3, 125, 70, 214, 124, 147, 251, 190, 18, 249, 66, 143,
                                        131, 141, 64, 255, 5, 112, 116, 73, 39, 244, 138, 100,
                                        252, 202, 112, 68, 128, 0, 0, 0}};
static const Pubkey INSTRUCTIONS_SYSVAR = {{6, 167, 213, 23, 24, 123, 209, 102, 53, 218, 212, 4,
                                            85, 253, 194, 192, 193, 36, 198, 143, 33, 86, 117,
                                            165, 219, 186, 203, 95, 8, 0, 0, 0}};
static const Pubkey LOADER_V3 = {{2, 168, 246, 145, 78, 136, 161, 176, 226, 16, 21, 62, 247, 99,
                                  174, 43, 0, 194, 185, 61, 22, 193, 36, 210, 192, 83, 122, 16,
                                  4, 128, 0, 0}}; /* BPFLoaderUpgradeab1e11111111111111111111111 */
static const uint8_t RECEIPT_TAG[16] = "dgpu/v1/receipt";
static const uint8_t SEED_CONFIG[] = "config";
static const uint8_t SEED_CHANNEL[] = "channel";
static const uint8_t SEED_VAULT[] = "vault";

typedef struct {
  uint64_t discriminator;
  Pubkey admin;
  Pubkey settler;
  Pubkey treasury;
  Pubkey mints[MAX_MINTS];
  uint64_t channels_opened;
  int64_t dispute_window;
  uint16_t fee_bps;
  uint8_t bump;
  uint8_t mint_count;
  uint8_t version;
  uint8_t reserved[3];
} Config;
_Static_assert(sizeof(Config) == ACCOUNT_CONFIG_LEN, "Config differs from idl.json");

typedef struct {
  uint64_t discriminator;
  Pubkey renter;
  Pubkey provider;
  Pubkey mint;
  Pubkey vault;
  uint64_t channel_id;
  uint64_t open_nonce;
  uint64_t deposit;
  uint64_t settled;
  uint64_t paid;
  uint64_t fees;
  int64_t expiry;
  int64_t dispute_window;
  uint16_t fee_bps;
  uint8_t bump;
  uint8_t vault_bump;
  uint8_t version;
  uint8_t reserved[3];
} Channel;
_Static_assert(sizeof(Channel) == ACCOUNT_CHANNEL_LEN, "Channel differs from idl.json");

typedef struct {
  AccountInfo *accounts;
  uint64_t accounts_len;
  const uint8_t *args; /* instruction data after the discriminator */
  uint64_t args_len;
  Pubkey program_id; /* aligned copy */
} Ctx;

/* ---- borsh argument reader ---- */

typedef struct {
  const uint8_t *at;
  uint64_t left;
  bool ok;
} Reader;

static const uint8_t *take(Reader *r, uint64_t n) {
  if (!r->ok || r->left < n) {
    r->ok = false;
    return NULL;
  }
  const uint8_t *at = r->at;
  r->at += n;
  r->left -= n;
  return at;
}

static uint64_t read_u64(Reader *r) {
  const uint8_t *p = take(r, 8);
  return p ? load_u64(p) : 0;
}

static uint32_t read_u32(Reader *r) {
  const uint8_t *p = take(r, 4);
  return p ? (uint32_t)(load_u16(p) | ((uint32_t)load_u16(p + 2) << 16)) : 0;
}

static uint16_t read_u16(Reader *r) {
  const uint8_t *p = take(r, 2);
  return p ? load_u16(p) : 0;
}

static void read_key(Reader *r, Pubkey *out) {
  const uint8_t *p = take(r, 32);
  if (p) sol_memcpy_(out, p, 32);
}

/* ---- account checks ---- */

static Config *load_config(const Ctx *ctx, const AccountInfo *account) {
  if (!key_eq(account->owner, &ctx->program_id) || account->data_len < sizeof(Config)) return NULL;
  Config *config = (Config *)account->data;
#ifndef MUTANT_ANY_VERSION
  if (config->version > LAYOUT_VERSION) return NULL;
#endif
  return config->discriminator == ACCOUNT_CONFIG ? config : NULL;
}

static Channel *load_channel(const Ctx *ctx, const AccountInfo *account) {
  if (!account->is_writable || !key_eq(account->owner, &ctx->program_id) ||
      account->data_len < sizeof(Channel))
    return NULL;
  Channel *channel = (Channel *)account->data;
#ifndef MUTANT_ANY_VERSION
  if (channel->version > LAYOUT_VERSION) return NULL;
#endif
  return channel->discriminator == ACCOUNT_CHANNEL ? channel : NULL;
}

/* A writable, initialized SPL token account of `mint` whose token owner is `owner`. */
static bool is_token_account(const AccountInfo *account, const Pubkey *mint, const Pubkey *owner) {
  return account->is_writable && key_eq(account->owner, &TOKEN_PROGRAM) &&
         account->data_len == TOKEN_ACCOUNT_LEN && key_eq((const Pubkey *)account->data, mint) &&
         key_eq((const Pubkey *)(account->data + 32), owner) &&
         account->data[TOKEN_STATE_OFFSET] == TOKEN_STATE_INITIALIZED;
}

static uint64_t token_amount(const AccountInfo *account) {
  return *(const uint64_t *)(account->data + TOKEN_AMOUNT_OFFSET);
}

static bool mint_allowed(const Config *config, const Pubkey *mint) {
  for (uint64_t i = 0; i < config->mint_count && i < MAX_MINTS; i++)
    if (key_eq(&config->mints[i], mint)) return true;
  return false;
}

static int64_t now(void) {
  Clock clock;
  sol_get_clock_sysvar(&clock);
  return clock.unix_timestamp;
}

/* floor(amount * bps / 10000) without a 128-bit product. */
static uint64_t fee_of(uint64_t amount, uint16_t bps) {
  return (amount / MAX_FEE_BPS) * bps + (amount % MAX_FEE_BPS) * bps / MAX_FEE_BPS;
}

/* ---- cross-program invocations ---- */

static uint64_t rent_exempt_minimum(uint64_t size, uint64_t *lamports) {
  Rent rent;
  if (sol_get_rent_sysvar(&rent) != 0) return ERROR_INVALID_ARGUMENT;
  uint64_t yearly = (ACCOUNT_STORAGE_OVERHEAD + size) * rent.lamports_per_byte_year;
  if (rent.exemption_threshold_f64_bits == F64_TWO_BITS) *lamports = 2 * yearly;
  else if (rent.exemption_threshold_f64_bits == F64_ONE_BITS) *lamports = yearly;
  else return ERROR_INVALID_ARGUMENT;
  return SUCCESS;
}

static uint64_t system_invoke(const uint8_t *data, uint64_t len, const AccountMeta *metas,
                              const AccountInfo *infos, int count, const SignerSeeds *signer) {
  Instruction ix = {&SYSTEM_PROGRAM, metas, (uint64_t)count, data, len};
  return sol_invoke_signed_c(&ix, infos, count, signer, 1);
}

/* Creates `target` (a PDA signed for by `signer`) with `space` bytes owned by `owner`, paid
 * by `payer`, and refreshes its data_len: the C ABI reads the length from the AccountInfo,
 * and a stale one reads as a resize.
 *
 * Anyone can send lamports to any address, and the System Program's CreateAccount refuses
 * an address that holds some: a PDA funded before its creation would be blocked for good.
 * So, as Anchor's `init` does, an address that already holds lamports is topped up to the
 * rent-exempt minimum, then allocated and assigned (both signed with the PDA's seeds; the
 * System Program refuses either if the account already has data or another owner). The
 * lamports a stranger sent stay in the account: they are the stranger's gift. */
static uint64_t create_account(const AccountInfo *payer, AccountInfo *target, uint64_t space,
                               const Pubkey *owner, const SignerSeeds *signer) {
  uint64_t lamports = 0;
  uint64_t err = rent_exempt_minimum(space, &lamports);
  if (err) return err;
  AccountMeta metas[2] = {{payer->key, true, true}, {target->key, true, true}};
  AccountInfo infos[2] = {*payer, *target};
  uint64_t held = *target->lamports;
#ifndef MUTANT_CREATE_IGNORES_LAMPORTS
  if (held == 0) {
#endif
    uint8_t data[52] = {0}; /* SystemInstruction::CreateAccount = 0 (u32) */
    store_u64(data + 4, lamports);
    store_u64(data + 12, space);
    sol_memcpy_(data + 20, owner, 32);
    err = system_invoke(data, sizeof(data), metas, infos, 2, signer);
#ifndef MUTANT_CREATE_IGNORES_LAMPORTS
  } else {
    if (held < lamports) {
      uint8_t transfer[12] = {2}; /* SystemInstruction::Transfer */
      store_u64(transfer + 4, lamports - held);
      err = system_invoke(transfer, sizeof(transfer), metas, infos, 2, signer);
    }
    uint8_t allocate[12] = {8}; /* SystemInstruction::Allocate */
    store_u64(allocate + 4, space);
    if (!err) err = system_invoke(allocate, sizeof(allocate), &metas[1], &infos[1], 1, signer);
    uint8_t assign[36] = {1}; /* SystemInstruction::Assign */
    sol_memcpy_(assign + 4, owner, 32);
    if (!err) err = system_invoke(assign, sizeof(assign), &metas[1], &infos[1], 1, signer);
  }
#else
  (void)held;
#endif
  if (err) return err;
  target->data_len = current_data_len(target);
  return target->data_len == space ? SUCCESS : ERROR_INVALID_ARGUMENT;
}

static uint64_t token_transfer(const AccountInfo *from, const AccountInfo *to,
                               const AccountInfo *authority, uint64_t amount,
                               const SignerSeeds *signer) {
  uint8_t data[9] = {3}; /* TokenInstruction::Transfer */
  store_u64(data + 1, amount);
  AccountMeta metas[3] = {{from->key, true, false}, {to->key, true, false},
                          {authority->key, false, true}};
  Instruction ix = {&TOKEN_PROGRAM, metas, 3, data, sizeof(data)};
  AccountInfo infos[3] = {*from, *to, *authority};
  return sol_invoke_signed_c(&ix, infos, 3, signer, signer ? 1 : 0);
}

static uint64_t token_initialize_account(const AccountInfo *account, const AccountInfo *mint,
                                         const Pubkey *owner) {
  uint8_t data[33] = {18}; /* TokenInstruction::InitializeAccount3 */
  sol_memcpy_(data + 1, owner, 32);
  AccountMeta metas[2] = {{account->key, true, false}, {mint->key, false, false}};
  Instruction ix = {&TOKEN_PROGRAM, metas, 2, data, sizeof(data)};
  AccountInfo infos[2] = {*account, *mint};
  return sol_invoke_signed_c(&ix, infos, 2, NULL, 0);
}

static uint64_t token_close_account(const AccountInfo *account, const AccountInfo *destination,
                                    const AccountInfo *authority, const SignerSeeds *signer) {
  uint8_t data[1] = {9}; /* TokenInstruction::CloseAccount */
  AccountMeta metas[3] = {{account->key, true, false}, {destination->key, true, false},
                          {authority->key, false, true}};
  Instruction ix = {&TOKEN_PROGRAM, metas, 3, data, sizeof(data)};
  AccountInfo infos[3] = {*account, *destination, *authority};
  return sol_invoke_signed_c(&ix, infos, 3, signer, 1);
}

/* The channel PDA's signer seeds, pointing into the channel's own data. */
static void channel_signer(const Channel *channel, SignerSeed seeds[5], SignerSeeds *signer) {
  seeds[0] = (SignerSeed){SEED_CHANNEL, sizeof(SEED_CHANNEL) - 1};
  seeds[1] = (SignerSeed){channel->renter.bytes, 32};
  seeds[2] = (SignerSeed){channel->provider.bytes, 32};
  seeds[3] = (SignerSeed){(const uint8_t *)&channel->channel_id, 8};
  seeds[4] = (SignerSeed){&channel->bump, 1};
  signer->addr = seeds;
  signer->len = 5;
}

/* ---- config ---- */

typedef struct {
  Pubkey settler;
  Pubkey treasury;
  Pubkey mints[MAX_MINTS];
  int64_t dispute_window;
  uint32_t mint_count;
  uint16_t fee_bps;
} ConfigArgs;

static uint64_t read_config_args(Reader *r, ConfigArgs *args) {
  read_key(r, &args->settler);
  read_key(r, &args->treasury);
  args->fee_bps = read_u16(r);
  args->dispute_window = (int64_t)read_u64(r);
  args->mint_count = read_u32(r);
  if (!r->ok) return ERR_BAD_INSTRUCTION_DATA;
  if (args->mint_count < 1 || args->mint_count > MAX_MINTS) return ERR_BAD_MINT_LIST;
  for (uint32_t i = 0; i < args->mint_count; i++) read_key(r, &args->mints[i]);
  if (!r->ok || r->left != 0) return ERR_BAD_INSTRUCTION_DATA;
  if (args->fee_bps > MAX_FEE_BPS) return ERR_BAD_FEE;
  if (args->dispute_window < 0 || args->dispute_window > MAX_DISPUTE_WINDOW)
    return ERR_BAD_DISPUTE_WINDOW;
  return SUCCESS;
}

static void write_config(Config *config, const ConfigArgs *args) {
  config->settler = args->settler;
  config->treasury = args->treasury;
  sol_memset_(config->mints, 0, sizeof(config->mints));
  sol_memcpy_(config->mints, args->mints, 32 * (uint64_t)args->mint_count);
  config->mint_count = (uint8_t)args->mint_count;
  config->fee_bps = args->fee_bps;
  config->dispute_window = args->dispute_window;
}

/* `authority` signed and is the upgrade authority recorded in this program's ProgramData.
 * The ProgramData address is the upgradeable loader's PDA of [program id]: only the loader
 * can put data there, so no owner check is needed. After `set-upgrade-authority --final`
 * byte 12 is 0 but bytes 13..45 still hold the old key: the flag is read first. */
static uint64_t check_upgrade_authority(const Ctx *ctx, const AccountInfo *authority,
                                        const AccountInfo *program_data) {
  if (!authority->is_signer) return ERR_MISSING_SIGNATURE;
#ifndef MUTANT_ANY_PROGRAM_DATA
  uint8_t bump = 0;
  Pubkey expected;
  SignerSeed seeds[1] = {{ctx->program_id.bytes, 32}};
  if (sol_try_find_program_address(seeds, 1, &LOADER_V3, &expected, &bump) != 0 ||
      !key_eq(&expected, program_data->key))
    return ERR_BAD_PROGRAM_DATA;
#else
  (void)ctx;
  (void)LOADER_V3;
#endif
  const uint8_t *d = program_data->data;
  if (program_data->data_len < PROGRAM_DATA_META_LEN || load_u16(d) != PROGRAM_DATA_TAG ||
      load_u16(d + 2) != 0)
    return ERR_BAD_PROGRAM_DATA;
#ifndef MUTANT_IGNORE_AUTHORITY_FLAG
  if (d[PROGRAM_DATA_AUTHORITY_SET] != 1) return ERR_NOT_UPGRADE_AUTHORITY;
#endif
#ifndef MUTANT_ANY_AUTHORITY
  if (!bytes_eq(d + PROGRAM_DATA_AUTHORITY, authority->key, 32)) return ERR_NOT_UPGRADE_AUTHORITY;
#endif
  return SUCCESS;
}

/* accounts: payer (signer, writable), authority (signer), config (writable), program data,
 * system program;  args: admin, then as update_config. Only the program's upgrade
 * authority may create the config (whoever deployed it), so nobody can take the admin
 * seat between the deploy and the initialization; it names the admin. */
static uint64_t initialize(Ctx *ctx) {
  if (ctx->accounts_len < 5) return ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
  AccountInfo *payer = &ctx->accounts[0], *config_account = &ctx->accounts[2];
  Reader r = {ctx->args, ctx->args_len, true};
  Pubkey admin;
  read_key(&r, &admin);
  ConfigArgs args = {0};
  uint64_t err = read_config_args(&r, &args);
  if (err) return err;
  if (!payer->is_signer) return ERR_MISSING_SIGNATURE;
  err = check_upgrade_authority(ctx, &ctx->accounts[1], &ctx->accounts[3]);
  if (err) return err;
  if (!key_eq(ctx->accounts[4].key, &SYSTEM_PROGRAM)) return ERR_BAD_PROGRAM;
  if (!key_eq(config_account->owner, &SYSTEM_PROGRAM) || config_account->data_len != 0)
    return ERR_ALREADY_INITIALIZED;
  uint8_t bump = 0;
  Pubkey expected;
  SignerSeed seeds[2] = {{SEED_CONFIG, sizeof(SEED_CONFIG) - 1}, {&bump, 1}};
  if (sol_try_find_program_address(seeds, 1, &ctx->program_id, &expected, &bump) != 0 ||
      !key_eq(&expected, config_account->key))
    return ERR_BAD_PDA;
  SignerSeeds signer = {seeds, 2};
  err = create_account(payer, config_account, sizeof(Config), &ctx->program_id, &signer);
  if (err) return err;
  Config *config = (Config *)config_account->data;
  config->discriminator = ACCOUNT_CONFIG;
  config->admin = admin;
  config->bump = bump;
  config->version = LAYOUT_VERSION;
  write_config(config, &args);
  LOG("escrow: config initialized");
  return SUCCESS;
}

/* accounts: admin (signer), config (writable); args: new_admin, then as initialize */
static uint64_t update_config(Ctx *ctx) {
  if (ctx->accounts_len < 2) return ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
  AccountInfo *admin = &ctx->accounts[0], *config_account = &ctx->accounts[1];
  Reader r = {ctx->args, ctx->args_len, true};
  Pubkey new_admin;
  read_key(&r, &new_admin);
  ConfigArgs args = {0};
  uint64_t err = read_config_args(&r, &args);
  if (err) return err;
  Config *config = load_config(ctx, config_account);
  if (config == NULL || !config_account->is_writable) return ERR_BAD_CONFIG;
  if (!admin->is_signer) return ERR_MISSING_SIGNATURE;
  if (!key_eq(admin->key, &config->admin)) return ERR_UNAUTHORIZED;
  config->admin = new_admin;
  write_config(config, &args);
  LOG("escrow: config updated");
  return SUCCESS;
}

/* ---- channels ---- */

/* accounts: renter (signer, writable), provider, mint, config (writable), channel (writable),
 * vault (writable), renter token (writable), token program, system program
 * args: channel_id u64, deposit u64, expiry i64, max_fee_bps u16, max_dispute_window i64
 *
 * The renter's bounds: the config (which its admin may change at any time, and so just
 * before this transaction lands) must not take a larger fee nor hold the deposit for a
 * longer dispute window than the renter agreed to. The channel keeps the config's fee and
 * window as they are now: later config changes do not touch it. */
static uint64_t open_channel(Ctx *ctx) {
  if (ctx->accounts_len < 9) return ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
  AccountInfo *a = ctx->accounts;
  AccountInfo *renter = &a[0], *provider = &a[1], *mint = &a[2], *config_account = &a[3];
  AccountInfo *channel_account = &a[4], *vault = &a[5], *renter_token = &a[6];
  Reader r = {ctx->args, ctx->args_len, true};
  const uint8_t *channel_id = r.at;
  read_u64(&r);
  uint64_t deposit = read_u64(&r);
  int64_t expiry = (int64_t)read_u64(&r);
  uint16_t max_fee_bps = read_u16(&r);
  int64_t max_dispute_window = (int64_t)read_u64(&r);
  if (!r.ok || r.left != 0) return ERR_BAD_INSTRUCTION_DATA;
  if (!renter->is_signer) return ERR_MISSING_SIGNATURE;
  Config *config = load_config(ctx, config_account);
  if (config == NULL || !config_account->is_writable) return ERR_BAD_CONFIG;
#ifndef MUTANT_NO_FEE_BOUND
  if (config->fee_bps > max_fee_bps) return ERR_FEE_ABOVE_BOUND;
#else
  (void)max_fee_bps;
#endif
#ifndef MUTANT_NO_WINDOW_BOUND
  if (config->dispute_window > max_dispute_window) return ERR_DISPUTE_WINDOW_ABOVE_BOUND;
#else
  (void)max_dispute_window;
#endif
  if (!key_eq(a[7].key, &TOKEN_PROGRAM) || !key_eq(a[8].key, &SYSTEM_PROGRAM))
    return ERR_BAD_PROGRAM;
  if (!mint_allowed(config, mint->key)) return ERR_MINT_NOT_ALLOWED;
  if (deposit == 0) return ERR_ZERO_AMOUNT;
  if (expiry <= now() || expiry > INT64_MAX - config->dispute_window) return ERR_BAD_EXPIRY;
  if (config->channels_opened == UINT64_MAX) return ERR_OVERFLOW;

  uint8_t bump = 0, vault_bump = 0;
  Pubkey expected;
  SignerSeed seeds[5] = {{SEED_CHANNEL, sizeof(SEED_CHANNEL) - 1},
                         {renter->key->bytes, 32},
                         {provider->key->bytes, 32},
                         {channel_id, 8},
                         {&bump, 1}};
  if (sol_try_find_program_address(seeds, 4, &ctx->program_id, &expected, &bump) != 0 ||
      !key_eq(&expected, channel_account->key))
    return ERR_BAD_PDA;
  SignerSeed vault_seeds[3] = {
      {SEED_VAULT, sizeof(SEED_VAULT) - 1}, {channel_account->key->bytes, 32}, {&vault_bump, 1}};
  if (sol_try_find_program_address(vault_seeds, 2, &ctx->program_id, &expected, &vault_bump) != 0 ||
      !key_eq(&expected, vault->key))
    return ERR_BAD_VAULT;

  SignerSeeds channel_signer_seeds = {seeds, 5}, vault_signer = {vault_seeds, 3};
  uint64_t err = create_account(renter, channel_account, sizeof(Channel), &ctx->program_id,
                                &channel_signer_seeds);
  if (err) return err;
  err = create_account(renter, vault, TOKEN_ACCOUNT_LEN, &TOKEN_PROGRAM, &vault_signer);
  if (err) return err;
  err = token_initialize_account(vault, mint, channel_account->key);
  if (err) return err;
  err = token_transfer(renter_token, vault, renter, deposit, NULL);
  if (err) return err;

  config->channels_opened += 1;
  Channel *channel = (Channel *)channel_account->data;
  channel->discriminator = ACCOUNT_CHANNEL;
  channel->renter = *renter->key;
  channel->provider = *provider->key;
  channel->mint = *mint->key;
  channel->vault = *vault->key;
  channel->channel_id = load_u64(channel_id);
  channel->open_nonce = config->channels_opened;
  channel->deposit = deposit;
  channel->expiry = expiry;
  channel->dispute_window = config->dispute_window;
  channel->fee_bps = config->fee_bps;
  channel->bump = bump;
  channel->vault_bump = vault_bump;
  channel->version = LAYOUT_VERSION;
  LOG("escrow: channel opened");
  return SUCCESS;
}

/* accounts: renter (signer), channel (writable), vault (writable), renter token (writable),
 * token program;  args: amount u64, expiry i64 (not earlier than the current one) */
static uint64_t top_up(Ctx *ctx) {
  if (ctx->accounts_len < 5) return ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
  AccountInfo *a = ctx->accounts;
  Reader r = {ctx->args, ctx->args_len, true};
  uint64_t amount = read_u64(&r);
  int64_t expiry = (int64_t)read_u64(&r);
  if (!r.ok || r.left != 0) return ERR_BAD_INSTRUCTION_DATA;
  Channel *channel = load_channel(ctx, &a[1]);
  if (channel == NULL) return ERR_BAD_CHANNEL;
  if (!a[0].is_signer) return ERR_MISSING_SIGNATURE;
  if (!key_eq(a[0].key, &channel->renter)) return ERR_UNAUTHORIZED;
  if (!key_eq(a[2].key, &channel->vault)) return ERR_BAD_VAULT;
  if (!key_eq(a[4].key, &TOKEN_PROGRAM)) return ERR_BAD_PROGRAM;
  if (expiry < channel->expiry || expiry > INT64_MAX - channel->dispute_window)
    return ERR_BAD_EXPIRY;
  if (amount == 0 && expiry == channel->expiry) return ERR_ZERO_AMOUNT;
  if (amount > UINT64_MAX - channel->deposit) return ERR_OVERFLOW;
  channel->deposit += amount;
  channel->expiry = expiry;
  if (amount == 0) return SUCCESS;
  return token_transfer(&a[3], &a[2], &a[0], amount, NULL);
}

/* Raise the settled mark to `cumulative`: the provider gets the increment minus the fee
 * increment (fees are floor(settled * bps / 10000), so rounding never depends on how a
 * total was reached). A receipt not above the mark settles nothing. */
static uint64_t advance(Channel *channel, const AccountInfo *channel_account,
                        const AccountInfo *vault, const AccountInfo *provider_token,
                        uint64_t cumulative) {
  if (cumulative <= channel->settled) {
    LOG("escrow: receipt not above the settled mark, skipped");
    return SUCCESS;
  }
  if (cumulative > channel->deposit) return ERR_ABOVE_DEPOSIT;
  uint64_t fees = fee_of(cumulative, channel->fee_bps);
  uint64_t pay = (cumulative - channel->settled) - (fees - channel->fees);
  channel->settled = cumulative;
  channel->fees = fees;
  channel->paid += pay;
  if (pay == 0) return SUCCESS;
  SignerSeed seeds[5];
  SignerSeeds signer;
  channel_signer(channel, seeds, &signer);
  return token_transfer(vault, provider_token, channel_account, pay, &signer);
}

/* The Ed25519 precompile instruction right before the current one, from the sysvar. */
static uint64_t previous_precompile(const AccountInfo *sysvar, const uint8_t **data,
                                    uint64_t *len) {
  if (!key_eq(sysvar->key, &INSTRUCTIONS_SYSVAR)) return ERR_BAD_SYSVAR;
  const uint8_t *d = sysvar->data;
  uint64_t size = sysvar->data_len;
  if (size < 4) return ERR_BAD_SYSVAR;
  uint64_t count = load_u16(d), current = load_u16(d + size - 2);
  if (current == 0 || current >= count) return ERR_MISSING_PRECOMPILE;
  uint64_t at = load_u16(d + 2 + 2 * (current - 1));
  if (at + 2 > size) return ERR_BAD_SYSVAR;
  at += 2 + 33 * (uint64_t)load_u16(d + at); /* account metas: flags + key */
  if (at + 34 > size) return ERR_BAD_SYSVAR;
  const uint8_t *program = d + at;
  uint64_t ix_len = load_u16(d + at + 32);
  at += 34;
  if (at + ix_len > size) return ERR_BAD_SYSVAR;
  if (!bytes_eq(program, &ED25519_PROGRAM, 32)) return ERR_MISSING_PRECOMPILE;
  *data = d + at;
  *len = ix_len;
  return SUCCESS;
}

/* One receipt: `key` and `receipt` point into the precompile's verified data. */
static uint64_t settle_one(const Ctx *ctx, AccountInfo *accounts, const uint8_t *key,
                           const uint8_t *receipt) {
  AccountInfo *channel_account = &accounts[0], *vault = &accounts[1];
  Channel *channel = load_channel(ctx, channel_account);
  if (channel == NULL) return ERR_BAD_CHANNEL;
  if (!key_eq(vault->key, &channel->vault)) return ERR_BAD_VAULT;
  if (!is_token_account(&accounts[2], &channel->mint, &channel->provider))
    return ERR_BAD_TOKEN_ACCOUNT;
  if (!bytes_eq(key, &channel->renter, 32)) return ERR_WRONG_SIGNER;
  if (!bytes_eq(receipt, RECEIPT_TAG, 16) || !bytes_eq(receipt + 16, channel_account->key, 32) ||
      !bytes_eq(receipt + 48, &channel->open_nonce, 8))
    return ERR_WRONG_RECEIPT;
  return advance(channel, channel_account, vault, &accounts[2], load_u64(receipt + 56));
}

/* accounts: instructions sysvar, token program, then (channel, vault, provider token) per
 * receipt; the previous instruction is the Ed25519 precompile with one signature per
 * channel, in the same order, whose key and message live in its own data. */
static uint64_t settle(Ctx *ctx) {
  if (ctx->args_len != 0) return ERR_BAD_INSTRUCTION_DATA;
  if (ctx->accounts_len < 5 || (ctx->accounts_len - 2) % 3 != 0) return ERR_BAD_ACCOUNT_COUNT;
  if (!key_eq(ctx->accounts[1].key, &TOKEN_PROGRAM)) return ERR_BAD_PROGRAM;
  uint64_t receipts = (ctx->accounts_len - 2) / 3;
  const uint8_t *pre = NULL;
  uint64_t pre_len = 0;
  uint64_t err = previous_precompile(&ctx->accounts[0], &pre, &pre_len);
  if (err) return err;
  if (pre_len < 2 + SIGNATURE_OFFSETS_LEN * receipts || pre[0] != receipts)
    return ERR_SIGNATURE_COUNT;
  for (uint64_t i = 0; i < receipts; i++) {
    const uint8_t *o = pre + 2 + SIGNATURE_OFFSETS_LEN * i;
    uint64_t signature = load_u16(o), key = load_u16(o + 4), message = load_u16(o + 8);
    /* the three instruction indices are 0xFFFF (its own data): all six bytes are 0xFF */
    if ((o[2] & o[3] & o[6] & o[7] & o[12] & o[13]) != 0xff || load_u16(o + 10) != RECEIPT_LEN ||
        signature + 64 > pre_len || key + 32 > pre_len || message + RECEIPT_LEN > pre_len)
      return ERR_BAD_SIGNATURE_OFFSETS;
    err = settle_one(ctx, &ctx->accounts[2 + 3 * i], pre + key, pre + message);
    if (err) return err;
  }
  return SUCCESS;
}

typedef struct {
  Channel *channel;
  AccountInfo *channel_account;
  AccountInfo *vault;
  AccountInfo *renter;
  AccountInfo *renter_token;
  AccountInfo *treasury_token;
} Closing;

static uint64_t check_closing(const Ctx *ctx, Closing *c, const AccountInfo *config_account,
                              const AccountInfo *token_program) {
  Channel *channel = c->channel = load_channel(ctx, c->channel_account);
  if (channel == NULL) return ERR_BAD_CHANNEL;
  const Config *config = load_config(ctx, config_account);
  if (config == NULL) return ERR_BAD_CONFIG;
  if (!key_eq(token_program->key, &TOKEN_PROGRAM)) return ERR_BAD_PROGRAM;
  if (!key_eq(c->vault->key, &channel->vault)) return ERR_BAD_VAULT;
  if (!key_eq(c->renter->key, &channel->renter) || !c->renter->is_writable)
    return ERR_UNAUTHORIZED;
  if (!is_token_account(c->renter_token, &channel->mint, &channel->renter) ||
      !is_token_account(c->treasury_token, &channel->mint, &config->treasury))
    return ERR_BAD_TOKEN_ACCOUNT;
  return SUCCESS;
}

/* Close a program-owned account: lamports to `to`, data zeroed and shrunk to nothing,
 * ownership back to the System Program (so the address can be created again). */
static void delete_account(AccountInfo *account, AccountInfo *to) {
  *to->lamports += *account->lamports;
  *account->lamports = 0;
  sol_memset_(account->data, 0, account->data_len);
  *(uint64_t *)(account->data - 8) = 0; /* the serialized length the runtime reads back */
  account->data_len = 0;
  sol_memcpy_(account->owner, &SYSTEM_PROGRAM, 32);
}

/* Fees to the treasury, the rest of the vault to the renter, then delete vault and channel
 * (their rent goes to the renter). */
static uint64_t close_channel(const Closing *c) {
  Channel *channel = c->channel;
  uint64_t held = token_amount(c->vault);
  if (held < channel->fees) return ERR_OVERFLOW;
  uint64_t refund = held - channel->fees;
  SignerSeed seeds[5];
  SignerSeeds signer;
  channel_signer(channel, seeds, &signer);
  uint64_t err = SUCCESS;
  if (channel->fees)
    err = token_transfer(c->vault, c->treasury_token, c->channel_account, channel->fees, &signer);
  if (!err && refund)
    err = token_transfer(c->vault, c->renter_token, c->channel_account, refund, &signer);
  if (!err) err = token_close_account(c->vault, c->renter, c->channel_account, &signer);
  if (err) return err;
  LOG("escrow: channel closed (paid, fees, refunded)");
  sol_log_64_(channel->paid, channel->fees, refund, 0, 0);
  delete_account(c->channel_account, c->renter);
  return SUCCESS;
}

/* accounts: channel, vault, renter, renter token, config, treasury token, token program
 * (all but config and the token program writable). Anyone may submit. */
static uint64_t refund(Ctx *ctx) {
  if (ctx->args_len != 0) return ERR_BAD_INSTRUCTION_DATA;
  if (ctx->accounts_len < 7) return ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
  AccountInfo *a = ctx->accounts;
  Closing c = {NULL, &a[0], &a[1], &a[2], &a[3], &a[5]};
  uint64_t err = check_closing(ctx, &c, &a[4], &a[6]);
  if (err) return err;
  if (now() < c.channel->expiry + c.channel->dispute_window) return ERR_NOT_EXPIRED;
  return close_channel(&c);
}

/* accounts: renter (signer, writable), provider (signer), channel, vault, renter token,
 * provider token, config, treasury token, token program;  args: cumulative u64 */
static uint64_t cooperative_close(Ctx *ctx) {
  if (ctx->accounts_len < 9) return ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
  AccountInfo *a = ctx->accounts;
  Reader r = {ctx->args, ctx->args_len, true};
  uint64_t cumulative = read_u64(&r);
  if (!r.ok || r.left != 0) return ERR_BAD_INSTRUCTION_DATA;
  Closing c = {NULL, &a[2], &a[3], &a[0], &a[4], &a[7]};
  uint64_t err = check_closing(ctx, &c, &a[6], &a[8]);
  if (err) return err;
  if (!a[0].is_signer || !a[1].is_signer) return ERR_MISSING_SIGNATURE;
  if (!key_eq(a[1].key, &c.channel->provider)) return ERR_UNAUTHORIZED;
  if (!is_token_account(&a[5], &c.channel->mint, &c.channel->provider))
    return ERR_BAD_TOKEN_ACCOUNT;
  err = advance(c.channel, c.channel_account, c.vault, &a[5], cumulative);
  if (err) return err;
  return close_channel(&c);
}

uint64_t entrypoint(const uint8_t *input) {
  Input in;
  in.accounts = (AccountInfo *)HEAP_START;
  if (!deserialize(input, &in, MAX_ACCOUNTS)) return ERR_BAD_ACCOUNT_COUNT;
  if (in.data_len < 8) return ERR_BAD_INSTRUCTION_DATA;
  Ctx ctx = {in.accounts, in.accounts_len, in.data + 8, in.data_len - 8, {{0}}};
  sol_memcpy_(&ctx.program_id, in.program_id, 32);
  switch (load_u64(in.data)) {
    case IX_INITIALIZE: return initialize(&ctx);
    case IX_UPDATE_CONFIG: return update_config(&ctx);
    case IX_OPEN_CHANNEL: return open_channel(&ctx);
    case IX_TOP_UP: return top_up(&ctx);
    case IX_SETTLE: return settle(&ctx);
    case IX_REFUND: return refund(&ctx);
    case IX_COOPERATIVE_CLOSE: return cooperative_close(&ctx);
    default: return ERR_BAD_INSTRUCTION_DATA;
  }
}
