// Decoding of packed weight codes (runtime/quant/pack.ts: ⌊32/b⌋ b-bit codes per u32,
// little-endian, each row starting a new word) for the quantized GEMMs. The including
// kernel declares `p` (gemm_common's Params: N; p0 = code words per row; p1 = the group
// size of MODE 0, 1, 2 and 7, 0 for one LUT a row in MODE 0 and 2), `codes: array<u32>`
// and `wq: array<u32>` (the weight's parameters, f32 as bit patterns):
//   MODE 0  f32 LUT:   ŵ = lut[g·2^b + code], g = row·ng + k/G, or g = row where p1 = 0
//                      (one LUT a row)                                 (TLQ, A16)
//   MODE 1  affine:    ŵ = (code − zero[g])·scale[g], g = row·ng + k/G  (uniform, A16;
//                      scale [N·ng] then zero [N·ng], ng = ⌈K/G⌉)
//   MODE 2  int8 LUT:  scale [N] f32, then per row 2^b int8 packed four a word:
//                      ŵ ≈ scale[row]·lut8[row, code]; with p1 = G > 0 one scale and
//                      table a (row, group) as MODE 0's g, [N·ng] then [N·ng, 2^b]: the
//                      kernel scales each group's sums (WGW, qgemm_int_scales.wgsl)
//                                                                      (TLQ/uniform, A8)
//   MODE 3  direct:    8-bit codes offset by 128: int8 = code − 128 (word ^ 0x80808080),
//                      row scale [N] as in MODE 2                      (uniform sym W8, A8)
//   MODE 4  affine:    int8 = code − zero[row]: row scale [N], then zero [N] (f32)
//                                                                      (uniform per-row, A8)
//   MODE 5  TLQ compact: per row Δ± (f16) and z± (i16) in two words, then η; levels
//                      rebuilt by qgemm_tlq.wgsl (+ _wg or _direct)          (TLQ, A16)
//   MODE 6  TLQ compact, int8: as 5, s_row = max|level| / 127, int8 = round(127·level / max)
//                                                                      (TLQ, A8)
//   MODE 7  affine in groups, int8: int8 = code − zero[g]; scale [N·ng] then zero [N·ng] as
//           MODE 1 (G divides K); the kernel scales each group's sums (qgemm_int_scales.wgsl)
//                                                                      (uniform groups, A8)
//   MODE 8  MODE 2's tables read as floats: ŵ = scale[g]·lut8[g, code] (TLQ in groups, A16
//           beside A8: the centred plans' centre product shares MODE 2's tensor)
// MODE 5/6 call tlq_w4, tlq_i8 and tlq_s of the TLQ fragment the host composes in.
override BITS: u32 = 4u; // 3, 4 or 8
override MODE: u32 = 0u;
// The group size when the host fixes it at pipeline creation (the integer kernels: a constant
// divisor, shifts for a power of two, instead of three integer divisions a decoded word); 0:
// p.p1, read at run time.
override GC: u32 = 0u;

// The group size of MODE 0, 1, 2 and 7 (0: one a row, MODE 0 and 2).
fn gsize() -> u32 {
  if (GC > 0u) { return GC; }
  return p.p1;
}

fn cpw() -> u32 { return 32u / BITS; }
fn code_mask() -> u32 { return (1u << BITS) - 1u; }

// The codes of k = 4·k4 … 4·k4 + 3 of row `row` (k4 < K4).
fn codes4(row: u32, k4: u32) -> vec4<u32> {
  let base = row * p.p0;
  let k = 4u * k4;
  if (cpw() % 4u == 0u) { // 4 and 8 bits: the four codes share one word
    let w = codes[base + k / cpw()];
    let s = (k % cpw()) * BITS;
    return (vec4<u32>(w) >> (vec4<u32>(s) + vec4<u32>(0u, BITS, 2u * BITS, 3u * BITS))) &
      vec4<u32>(code_mask());
  }
  var c = vec4<u32>(0u);
  for (var i = 0u; i < 4u; i++) {
    let kk = k + i;
    c[i] = (codes[base + kk / cpw()] >> ((kk % cpw()) * BITS)) & code_mask();
  }
  return c;
}

// MODE 0, 2 and 8: the LUT of the weights at k = 4·k4 … of row `row` (per row where p1 = 0).
fn lut_of(row: u32, k4: u32) -> u32 {
  let G = gsize();
  if (G == 0u) { return row; }
  return row * (p.K / G) + (4u * k4) / G;
}

// Four weights of row `row` at k = 4·k4 … (MODE 0, 1, 5 or 8).
fn wdec4(row: u32, k4: u32) -> vec4<f32> {
  let c = codes4(row, k4);
  if (MODE == 5u) { return tlq_w4(row, c); }
  if (MODE == 8u) {
    let lb = lut8_base(row, k4);
    let s = bitcast<f32>(wq[lut_of(row, k4)]);
    let b = vec4<u32>(lut8(lb, c.x), lut8(lb, c.y), lut8(lb, c.z), lut8(lb, c.w));
    return vec4<f32>((vec4<i32>(b << vec4<u32>(24u)) >> vec4<u32>(24u))) * s; // sign-extended
  }
  if (MODE == 0u) {
    let b = lut_of(row, k4) << BITS;
    return vec4<f32>(bitcast<f32>(wq[b + c.x]), bitcast<f32>(wq[b + c.y]),
                     bitcast<f32>(wq[b + c.z]), bitcast<f32>(wq[b + c.w]));
  }
  let ng = (p.K + p.p1 - 1u) / p.p1;
  let g = row * ng + (4u * k4) / p.p1;
  let scale = bitcast<f32>(wq[g]);
  let zero = bitcast<f32>(wq[p.N * ng + g]);
  return (vec4<f32>(c) - zero) * scale;
}

fn lut8(lb: u32, c: u32) -> u32 { return (wq[lb + c / 4u] >> ((c % 4u) * 8u)) & 0xffu; }

// MODE 2 and 8: where the int8 table of the weights at k = 4·kw … of row `row` starts in wq.
fn lut8_base(row: u32, kw: u32) -> u32 {
  var luts = p.N; // the tables follow the scales
  if (gsize() > 0u) { luts = p.N * (p.K / gsize()); }
  return luts + lut_of(row, kw) * ((1u << BITS) / 4u);
}

// Four int8 weights of row `row` at k = 4·kw … packed in a word (MODE 2, 3, 4, 6 or 7).
fn wdec_i8(row: u32, kw: u32) -> u32 {
  if (MODE == 3u) { return codes[row * p.p0 + kw] ^ 0x80808080u; }
  let c = codes4(row, kw);
  if (MODE == 6u) { return tlq_i8(row, c); }
  if (MODE == 4u || MODE == 7u) { // code − zero as a byte: (c + 256 − z) mod 256, two's complement
    var zi = p.N + row;
    if (MODE == 7u) {
      let ng = p.K / gsize();
      zi = p.N * ng + row * ng + (4u * kw) / gsize();
    }
    let v = (c + vec4<u32>(256u - u32(bitcast<f32>(wq[zi])))) & vec4<u32>(0xffu);
    return v.x | (v.y << 8u) | (v.z << 16u) | (v.w << 24u);
  }
  let lb = lut8_base(row, kw);
  return lut8(lb, c.x) | (lut8(lb, c.y) << 8u) | (lut8(lb, c.z) << 16u) | (lut8(lb, c.w) << 24u);
}

// The row scale of MODE 2, 3, 4 and 6.
fn wscale(row: u32) -> f32 {
  if (MODE == 6u) { return tlq_s(row); }
  return bitcast<f32>(wq[row]);
}
