import { assertEquals } from "../../tests/assert.ts";
import { pixartPreprocess } from "./prompt_encoders.ts";

Deno.test("pixartPreprocess is Python's text.lower().strip() (CPython 3 outputs)", () => {
  // Pairs printed by CPython: [s, s.lower().strip()]. JS's trim would also strip U+FEFF and
  // keep U+001C–U+001F and U+0085; Python's strip does the opposite.
  const cases: [string, string][] = [
    [" \ufeffA B\u001c ", "\ufeffa b"],
    ["\u0085Hello WORLD\u3000", "hello world"],
    ["\u03a3\u039f\u03a6\u039f\u03a3 \u03a3", "\u03c3\u03bf\u03c6\u03bf\u03c2 \u03c3"],
    ["\u0130stanbul\t\n", "i\u0307stanbul"],
    ["\u001f\u001e", ""],
  ];
  for (const [s, want] of cases) assertEquals(pixartPreprocess(s), want, JSON.stringify(s));
});
