// The low-rank branch fused into the integer GEMM (qgemm_int.wgsl, LR4 > 0): out =
// epilogue(scaled sums + U·Bᵀ) with U = X·Aᵀ [M, R] (gemm version 4, run before) and B [N, R],
// R = 4·LR4. After the K loop the tile buffers are free: 16 ranks at a time, the tile's rows
// of U and columns of B are staged there rank-major (as the K loop's tiles), and each
// invocation adds their outer products to its 8×8 block: per rank 4 vec4 reads, 64 FMAs.
// qgemm_int_nolowrank.wgsl is the stub without bindings.
override LR4: u32 = 0u;

@group(0) @binding(9) var<storage, read> lru: array<DT4>;
@group(0) @binding(10) var<storage, read> lrb: array<DT4>;

// Ranks 4·r4 … 4·r4 + 3 of a row of U / of B (zero past R; rows past the edge read the last).
fn lr_u(row: u32, r4: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), vec4<f32>(lru[min(row, p.M - 1u) * LR4 + min(r4, LR4 - 1u)]), r4 < LR4);
}
fn lr_b(col: u32, r4: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), vec4<f32>(lrb[min(col, p.N - 1u) * LR4 + min(r4, LR4 - 1u)]), r4 < LR4);
}

// Stages ranks r0 … r0 + 15 into xsh (U's tile rows) and wsh (B's tile columns): rank r of
// tile row i at xsh[r·BM/4 + i/4][i % 4] (f32 bits), as the K loop stores k.
fn lr_stage(m0: u32, n0: u32, tid: u32, nt: u32, r0: u32) {
  for (var v = tid; v < 4u * bm(); v += nt) {
    let i = v / 4u;
    let q = v % 4u;
    let u = lr_u(m0 + i, r0 / 4u + q);
    for (var j = 0u; j < 4u; j++) { xsh[(4u * q + j) * (bm() / 4u) + i / 4u][i % 4u] = bitcast<u32>(u[j]); }
  }
  for (var v = tid; v < 4u * bn(); v += nt) {
    let i = v / 4u;
    let q = v % 4u;
    let b = lr_b(n0 + i, r0 / 4u + q);
    for (var j = 0u; j < 4u; j++) { wsh[(4u * q + j) * (bn() / 4u) + i / 4u][i % 4u] = bitcast<u32>(b[j]); }
  }
}
