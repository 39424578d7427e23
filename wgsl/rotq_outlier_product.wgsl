// The block product of wgsl/rotq_outlier.wgsl's two stages, pasted at its //@product_q1_va
// and //@product_q2_vb lines by runtime/ops/rotq.ts (expandMarkers), with Q_IN and V_IN
// replaced by the stage's matrix and rows (q1 and va, then q2 and vb): a function could not
// read the override-sized workgroup arrays (naga 29 panics on that). In scope there: b0
// (the chunk's first block), nb, j, K4, B4 and the overrides. Leaves acc[c·4 + r] = row r
// of block b0 + c times column j of the matrix, summed over i from 0 as the reference does.
var acc = array<f32, 16>(); // explicit: re-zeroed every chunk
for (var i4 = 0u; i4 < B4; i4++) {
  let i = 4u * i4;
  let qa = Q_IN[i * B + j];
  let qb = Q_IN[(i + 1u) * B + j];
  let qc = Q_IN[(i + 2u) * B + j];
  let qd = Q_IN[(i + 3u) * B + j];
  for (var c = 0u; c < NBC; c++) {
    if (b0 + c < nb) {
      for (var r = 0u; r < ROWS; r++) {
        let v = V_IN[r * K4 + (b0 + c) * B4 + i4];
        var a = acc[c * 4u + r];
        a = a + v.x * qa;
        a = a + v.y * qb;
        a = a + v.z * qc;
        a = a + v.w * qd;
        acc[c * 4u + r] = a;
      }
    }
  }
}
