import { assertEquals, assertThrows } from "../tests/assert.ts";
import { PluginRegistry } from "./registry.ts";

Deno.test("registry: lookup by kind and name, duplicates and unknown names are errors", () => {
  const r = new PluginRegistry();
  r.register({ kind: "rotation", name: "none", description: "identity" });
  r.register({ kind: "attention", name: "dense", description: "flash" });
  assertEquals(r.get("rotation", "none").description, "identity");
  assertEquals(r.list("attention").map((p) => p.name), ["dense"]);
  assertThrows(
    () => r.register({ kind: "rotation", name: "none", description: "x" }),
    Error,
    "already",
  );
  assertThrows(() => r.get("rotation", "hadamard"), RangeError, "registered: none");
});
