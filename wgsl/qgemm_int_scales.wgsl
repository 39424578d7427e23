// The scales of the integer GEMMs (qgemm_int.wgsl, qgemm_int_cpu.wgsl compose this in): the
// activations' per token (xsc [M]) or per group of GROUPW words (act_quant.wgsl's
// quant_groups, xsc [M, K4/GROUPW], with ASYM the zero points [M, K4/GROUPW] after them),
// and the weights' per row or, with WGW > 0 (MODE 7: uniform weights in groups of WGW words;
// MODE 2 with one int8 LUT a group; one group dividing the other), per group. Grouped sums
// are flushed from i32 into f32 at the end of every span of the smaller group, each scaled
// by s_x·s_w (the zero term z·Σ w8 by z·s_w); the store then applies the row scale only
// without weight groups.
override GROUPW: u32 = 0u;  // words an activation scale group; 0: one scale a token
override ASYM: bool = false;  // grouped asymmetric activations (GROUPW > 0)
override WGW: u32 = 0u;  // MODE 7 or 2: words a weight scale group; 0: one scale a row

@group(0) @binding(8) var<storage, read> xsc: array<f32>;

// Group g's activation scale and zero point for a row (rows past M read the last one).
fn gscale(row: u32, g: u32) -> f32 { return xsc[min(row, p.M - 1u) * (p.K4 / GROUPW) + g]; }
fn gzero(row: u32, g: u32) -> f32 {
  return xsc[(p.M + min(row, p.M - 1u)) * (p.K4 / GROUPW) + g];
}

// Words between flushes of the i32 sums into the f32 ones (0: none, one scale a row each).
fn flushw() -> u32 {
  if (GROUPW == 0u) { return WGW; }
  if (WGW == 0u) { return GROUPW; }
  return min(GROUPW, WGW);
}

// A row's activation scale over the span starting at word kw.
fn xscale(row: u32, kw: u32) -> f32 {
  if (GROUPW == 0u) { return xsc[min(row, p.M - 1u)]; }
  return gscale(row, kw / GROUPW);
}

// Weight group g's scale of column `col` (MODE 7 and 2: wq holds the scales [N, K4/WGW] first).
fn wgs(col: u32, g: u32) -> f32 { return bitcast<f32>(wq[min(col, p.N - 1u) * (p.K4 / WGW) + g]); }

// Columns col … col + 3's weight scales over the span starting at word kw (1 without groups).
fn wscale4(col: u32, kw: u32) -> vec4<f32> {
  if (WGW == 0u) { return vec4<f32>(1.0); }
  let g = kw / WGW;
  return vec4<f32>(wgs(col, g), wgs(col + 1u, g), wgs(col + 2u, g), wgs(col + 3u, g));
}
