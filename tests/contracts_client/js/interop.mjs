// Outside JavaScript clients, unmodified, against `dgpu chain serve` (argv[2] = RPC URL):
// @solana/web3.js 1.x sendAndConfirmTransaction (which waits on the WebSocket PubSub at
// port + 1) and @solana/spl-token createMint / mintTo / transfer. Prints one JSON line of
// what it saw; test_js_clients.py checks it against the chain.
import {
  Connection, Keypair, LAMPORTS_PER_SOL, SystemProgram, Transaction, sendAndConfirmTransaction,
} from "@solana/web3.js";
import {
  createMint, getAccount, getMint, getOrCreateAssociatedTokenAccount, mintTo, transfer,
} from "@solana/spl-token";

const url = process.argv[2];
const connection = new Connection(url, "confirmed");
const payer = Keypair.generate();
const dest = Keypair.generate();

const airdrop = await connection.requestAirdrop(payer.publicKey, 10 * LAMPORTS_PER_SOL);
const latest = await connection.getLatestBlockhash();
await connection.confirmTransaction({ signature: airdrop, ...latest }, "confirmed");

const tx = new Transaction().add(
  SystemProgram.transfer({ fromPubkey: payer.publicKey, toPubkey: dest.publicKey, lamports: LAMPORTS_PER_SOL }),
);
const transferSig = await sendAndConfirmTransaction(connection, tx, [payer]);

const mint = await createMint(connection, payer, payer.publicKey, null, 6);
const from = await getOrCreateAssociatedTokenAccount(connection, payer, mint, payer.publicKey);
const to = await getOrCreateAssociatedTokenAccount(connection, payer, mint, dest.publicKey);
await mintTo(connection, payer, mint, from.address, payer, 1_000_000n);
const tokenSig = await transfer(connection, payer, from.address, to.address, payer, 250_000n);

const toAccount = await getAccount(connection, to.address);
const mintInfo = await getMint(connection, mint);
const parsed = await connection.getParsedTransaction(tokenSig, { maxSupportedTransactionVersion: 0 });
const byOwner = await connection.getParsedTokenAccountsByOwner(dest.publicKey, { mint });
const supply = await connection.getTokenSupply(mint);
const history = await connection.getSignaturesForAddress(to.address);
const epoch = await connection.getEpochInfo();

console.log(JSON.stringify({
  payer: payer.publicKey.toBase58(),
  dest: dest.publicKey.toBase58(),
  transferSig,
  tokenSig,
  mint: mint.toBase58(),
  to: to.address.toBase58(),
  toAmount: toAccount.amount.toString(),
  supply: mintInfo.supply.toString(),
  decimals: mintInfo.decimals,
  parsedPostTokenBalances: parsed.meta.postTokenBalances,
  parsedLogs: parsed.meta.logMessages.length,
  byOwner: byOwner.value.map((a) => a.account.data.parsed.info.tokenAmount.amount),
  supplyRpc: supply.value.amount,
  history: history.map((h) => h.signature),
  epochSlot: epoch.absoluteSlot,
}));
// web3.js keeps its WebSocket open; the script is done
process.exit(0);
