// The block product of wgsl/rotq_outlier_fused.wgsl's two stages, pasted at its //@product_q1
// and //@product_q2 lines by runtime/ops/rotq_outlier_fused.ts (expandMarkers) with Q_IN
// replaced by the stage's matrix (q1, then q2): choosing the matrix per load in a function
// cost ~10 % of the kernel on an H200, and a function could not read the override-sized xs.
// In scope there: a0 … a11 (zero), base, cg, B4 and the overrides.
{
  // Rows 4·k4..4·k4+3 of Q, columns 4·cg..: loaded one iteration ahead, so that their
  // latency hides behind the multiply-adds of the iteration before.
  var na = Q_IN[cg];
  var nb = Q_IN[cg + B4];
  var nc = Q_IN[cg + 2u * B4];
  var nd = Q_IN[cg + 3u * B4];
  for (var k4 = 0u; k4 < B4; k4++) {
    let qa = na;
    let qb = nb;
    let qc = nc;
    let qd = nd;
    let qn = 4u * min(k4 + 1u, B4 - 1u) * B4 + cg; // the last iteration reloads its own
    na = Q_IN[qn];
    nb = Q_IN[qn + B4];
    nc = Q_IN[qn + 2u * B4];
    nd = Q_IN[qn + 3u * B4];
    let o = base + k4;
    a0 = mac4(a0, xs[o], qa, qb, qc, qd);
    if (NB > 1u) { a1 = mac4(a1, xs[o + B4], qa, qb, qc, qd); }
    if (NB > 2u) { a2 = mac4(a2, xs[o + 2u * B4], qa, qb, qc, qd); }
    if (NB > 3u) { a3 = mac4(a3, xs[o + 3u * B4], qa, qb, qc, qd); }
    if (NB > 4u) { a4 = mac4(a4, xs[o + 4u * B4], qa, qb, qc, qd); }
    if (NB > 5u) { a5 = mac4(a5, xs[o + 5u * B4], qa, qb, qc, qd); }
    if (NB > 6u) { a6 = mac4(a6, xs[o + 6u * B4], qa, qb, qc, qd); }
    if (NB > 7u) { a7 = mac4(a7, xs[o + 7u * B4], qa, qb, qc, qd); }
    if (NB > 8u) { a8 = mac4(a8, xs[o + 8u * B4], qa, qb, qc, qd); }
    if (NB > 9u) { a9 = mac4(a9, xs[o + 9u * B4], qa, qb, qc, qd); }
    if (NB > 10u) { a10 = mac4(a10, xs[o + 10u * B4], qa, qb, qc, qd); }
    if (NB > 11u) { a11 = mac4(a11, xs[o + 11u * B4], qa, qb, qc, qd); }
  }
}
