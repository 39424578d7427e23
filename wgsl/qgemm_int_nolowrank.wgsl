// qgemm_int.wgsl without a low-rank branch (LR4 stays 0): qgemm_int_lowrank.wgsl's names, no bindings.
override LR4: u32 = 0u;

struct LrRows { lo: mat4x4<f32>, hi: mat4x4<f32> }

fn lr_rows(row: u32, col: u32, colb: u32) -> LrRows { return LrRows(); }
