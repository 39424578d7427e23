import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { Prng } from "../io/prng.ts";
import { codesPerWord, packCodes, packInt8, unpackCodes, unpackInt8, wordsPerRow } from "./pack.ts";

Deno.test("codes round-trip at 3, 4 and 8 bits with rows that end mid-word", () => {
  const g = new Prng(3);
  for (const bits of [3, 4, 8]) {
    const [rows, cols] = [5, 23];
    const codes = Uint8Array.from({ length: rows * cols }, () => g.nextU32() % 2 ** bits);
    const words = packCodes(codes, rows, cols, bits);
    assertEquals(words.length, rows * wordsPerRow(cols, bits));
    assertEquals(Array.from(unpackCodes(words, rows, cols, bits)), Array.from(codes));
  }
  assertEquals([codesPerWord(3), codesPerWord(4), codesPerWord(8)], [10, 8, 4]);
});

Deno.test("code layout: little-endian within a word, each row starts a new word", () => {
  // Row 0: codes 1..9 (4-bit): word 0 = 0x87654321, word 1 = 9; row 1 starts at word 2.
  const codes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 0, 0, 0, 0, 0, 0, 0, 0];
  const w = packCodes(codes, 2, 9, 4);
  assertEquals(Array.from(w), [0x87654321, 9, 15, 0]);
  // 3-bit: ten codes in the low 30 bits.
  const w3 = packCodes([7, 0, 0, 0, 0, 0, 0, 0, 0, 7, 1], 1, 11, 3);
  assertEquals(Array.from(w3), [(7 | (7 << 27)) >>> 0, 1]);
});

Deno.test("int8 packing matches pack4xI8's layout and round-trips", () => {
  const v = [-1, 2, -128, 127, 5];
  const w = packInt8(v, 1, 5);
  assertEquals(Array.from(w), [0x7f8002ff, 5]);
  assertEquals(Array.from(unpackInt8(w, 1, 5)), v);
});

Deno.test("packing rejects out-of-range codes and wrong lengths", () => {
  assertThrows(() => packCodes([16], 1, 1, 4), RangeError, "code 16");
  assertThrows(() => packCodes([1, 2], 1, 1, 4), RangeError, "not 1×1");
  assertThrows(() => packInt8([200], 1, 1), RangeError, "int8");
  assertThrows(() => codesPerWord(0), RangeError, "bits");
});
