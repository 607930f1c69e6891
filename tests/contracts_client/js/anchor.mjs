// Anchor TS (@coral-xyz/anchor 0.32), unmodified, against `dgpu chain serve` and the escrow
// IDL from `dgpu chain idl --anchor`. argv: RPC URL, IDL path, renter key file (Solana CLI
// JSON), mint, provider, deposit, top-up, expiry. The renter opens a channel with
// program.methods.openChannel(...).accounts(...).rpc() (config, channel, vault are
// resolved by Anchor from the IDL's PDA seeds; token and system programs from their fixed
// addresses), tops it up with .rpc(), then reads it back with program.account.channel.all()
// (a memcmp filter on the renter field) and .fetch(). Prints one JSON line of what it saw;
// test_anchor_clients.py checks it against the chain.
import { readFileSync } from "node:fs";
import anchor from "@coral-xyz/anchor";
import { Connection, Keypair, PublicKey } from "@solana/web3.js";
import { getAssociatedTokenAddressSync } from "@solana/spl-token";

const { AnchorProvider, BN, Program, Wallet } = anchor;
const [url, idlPath, keyPath, mintArg, providerArg, depositArg, topUpArg, expiryArg] =
  process.argv.slice(2);
const idl = JSON.parse(readFileSync(idlPath, "utf8"));
const renter = Keypair.fromSecretKey(Uint8Array.from(JSON.parse(readFileSync(keyPath, "utf8"))));
const connection = new Connection(url, "confirmed");
const provider = new AnchorProvider(connection, new Wallet(renter), { commitment: "confirmed" });
const program = new Program(idl, provider);
const mint = new PublicKey(mintArg);
const providerKey = new PublicKey(providerArg);
const renterToken = getAssociatedTokenAddressSync(mint, renter.publicKey);
const channelId = new BN("18446744073709551557"); // near u64::MAX: the seed is 8 LE bytes

const open = program.methods
  .openChannel(channelId, new BN(depositArg), new BN(expiryArg), 10_000, new BN(86_400 * 30))
  .accounts({ renter: renter.publicKey, provider: providerKey, mint, renterToken });
const keys = await open.pubkeys();
const openSig = await open.rpc();
const topUpSig = await program.methods
  .topUp(new BN(topUpArg), new BN(expiryArg))
  .accounts({ renter: renter.publicKey, channel: keys.channel, vault: keys.vault, renterToken })
  .rpc();

const mine = await program.account.channel.all([
  { memcmp: { offset: 8, bytes: renter.publicKey.toBase58() } },
]);
const fetched = await program.account.channel.fetch(keys.channel);
const config = await program.account.config.fetch(keys.config);

console.log(JSON.stringify({
  openSig,
  topUpSig,
  channel: keys.channel.toBase58(),
  vault: keys.vault.toBase58(),
  config: keys.config.toBase58(),
  all: mine.map((c) => ({
    address: c.publicKey.toBase58(),
    deposit: c.account.deposit.toString(),
    provider: c.account.provider.toBase58(),
  })),
  fetched: {
    renter: fetched.renter.toBase58(),
    channelId: fetched.channelId.toString(),
    deposit: fetched.deposit.toString(),
    settled: fetched.settled.toString(),
    expiry: fetched.expiry.toString(),
  },
  configMints: config.mints.slice(0, config.mintCount).map((m) => m.toBase58()),
}));
// web3.js keeps its WebSocket open; the script is done
process.exit(0);
