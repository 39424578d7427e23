import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { UsageError } from "./common.ts";
import { artifactFolders } from "./serve.ts";

Deno.test("serve --text-encoder / --vae [NAME=]PATH: each artifact takes its NAME's, else the unnamed", () => {
  const specs = [
    { name: "pixart", path: "pixart-w4.safetensors" },
    { name: "flux", path: "flux-w4.safetensors" },
    { path: "other-w8.safetensors" },
    { name: "dense", path: "models/emoji-s" },
  ];
  const pick = artifactFolders(specs, ["flux=/m/FLUX.1-dev", "/m/PixArt"], "text-encoder");
  assertEquals(specs.map(pick), ["/m/PixArt", "/m/FLUX.1-dev", "/m/PixArt", undefined]);
  const none = artifactFolders(specs, undefined, "vae");
  assertEquals(specs.map(none), [undefined, undefined, undefined, undefined]);
  const bad: [string[], string][] = [
    [["dense=/m/x"], "no --model dense=… is an artifact"],
    [["nope=/m/x"], "no --model nope=… is an artifact"],
    [["/a", "/b"], "twice without a NAME"],
    [["flux=/a", "flux=/b"], "flux= is given twice"],
  ];
  for (const [given, msg] of bad) {
    assertThrows(() => artifactFolders(specs, given, "text-encoder"), UsageError, msg);
  }
  assertThrows(
    () => artifactFolders([{ path: "models/emoji-s" }], ["/m/x"], "vae"),
    UsageError,
    "no --model is an artifact",
  );
});
