//! From the model's per-token output to one unit vector per text.
//!
//! The pooling of sentence-transformers' all-MiniLM-L6-v2 (`1_Pooling/config.json`:
//! `pooling_mode_mean_tokens`, followed by its `Normalize` module): the mean of the token
//! vectors weighted by the attention mask, so padding does not count, then division by
//! the L2 norm. The guards are the ones sentence-transformers and PyTorch use: the token
//! count is clamped to at least 1e-9, the norm to at least 1e-12 (`F.normalize`).

use ndarray::{ArrayView2, ArrayView3, Axis};

/// Mean of `hidden[row, token, :]` over the tokens whose `mask` is non-zero, for each row.
/// `hidden` is `[rows, tokens, dimensions]`, `mask` is `[rows, tokens]`.
pub(crate) fn mean_pool(hidden: ArrayView3<'_, f32>, mask: ArrayView2<'_, i64>) -> Vec<Vec<f32>> {
    hidden
        .axis_iter(Axis(0))
        .zip(mask.axis_iter(Axis(0)))
        .map(|(tokens, mask)| {
            let mut sum = vec![0f32; tokens.ncols()];
            let mut count = 0f32;
            for (token, &weight) in tokens.axis_iter(Axis(0)).zip(mask.iter()) {
                if weight == 0 {
                    continue;
                }
                let weight = weight as f32;
                count += weight;
                for (s, &x) in sum.iter_mut().zip(token.iter()) {
                    *s += weight * x;
                }
            }
            let count = count.max(1e-9);
            sum.iter_mut().for_each(|s| *s /= count);
            sum
        })
        .collect()
}

/// Scales `vector` to unit L2 length (a zero vector stays zero).
pub(crate) fn normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    vector.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Array3};

    use super::*;

    #[test]
    fn mean_over_unmasked_tokens_only() {
        // Two rows, three tokens, two dimensions; row 0 has one padding token whose
        // values are huge, so counting it would show.
        let hidden = Array3::from_shape_vec(
            (2, 3, 2),
            vec![
                1.0, 2.0, 3.0, 4.0, 1000.0, -1000.0, 2.0, 0.0, 4.0, 0.0, 6.0, 3.0,
            ],
        )
        .unwrap();
        let mask = Array2::from_shape_vec((2, 3), vec![1, 1, 0, 1, 1, 1]).unwrap();
        let pooled = mean_pool(hidden.view(), mask.view());
        assert_eq!(pooled, vec![vec![2.0, 3.0], vec![4.0, 1.0]]);
    }

    #[test]
    fn fully_masked_row_is_zero_not_nan() {
        let hidden = Array3::from_elem((1, 2, 3), 5.0f32);
        let mask = Array2::zeros((1, 2));
        let mut pooled = mean_pool(hidden.view(), mask.view());
        assert_eq!(pooled[0], vec![0.0; 3]);
        normalize(&mut pooled[0]);
        assert_eq!(pooled[0], vec![0.0; 3]);
    }

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0f32, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut w = vec![1e-3f32, -2e-3, 5e-4, 7.0];
        normalize(&mut w);
        let length = w.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-6, "{length}");
    }
}
