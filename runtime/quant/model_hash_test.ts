import { assert, assertEquals } from "../../tests/assert.ts";
import { createHash } from "node:crypto";
import { foldersHash, transformerWeightsHash } from "./model_hash.ts";

function sha(...parts: (string | Uint8Array)[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest("hex");
}

Deno.test("model hashes: the files' bytes (and names), in order; a rewritten file rehashes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_hash_" });
  try {
    await Deno.mkdir(`${dir}/transformer`);
    await Deno.mkdir(`${dir}/text_encoder/sub`, { recursive: true });
    const a = Uint8Array.of(1, 2, 3), b = Uint8Array.of(4, 5);
    await Deno.writeFile(`${dir}/transformer/b.safetensors`, b);
    await Deno.writeFile(`${dir}/transformer/a.safetensors`, a);
    await Deno.writeTextFile(`${dir}/transformer/config.json`, "{}"); // not a weight file
    assertEquals(await transformerWeightsHash(dir), sha(a, b));
    await Deno.writeFile(`${dir}/text_encoder/x.bin`, a);
    await Deno.writeFile(`${dir}/text_encoder/sub/y.bin`, b);
    const parts = ["text_encoder", "missing"];
    const want = sha("text_encoder/sub/y.bin\0", b, "text_encoder/x.bin\0", a);
    assertEquals(await foldersHash(dir, parts), want);
    assertEquals(await foldersHash(dir, parts), want); // kept: the same answer
    // A file written again (another size and time) is read again, not answered from memory.
    await new Promise((r) => setTimeout(r, 5));
    await Deno.writeFile(`${dir}/text_encoder/x.bin`, b);
    assert(await foldersHash(dir, parts) !== want, "answered from memory after a rewrite");
    assertEquals(
      await foldersHash(dir, parts),
      sha("text_encoder/sub/y.bin\0", b, "text_encoder/x.bin\0", b),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
