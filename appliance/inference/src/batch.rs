//! Cutting a list of tokenized texts into batches.
//!
//! A batch is one tensor of `rows × width` tokens, every row padded to the longest
//! (`width`). The model's cost grows with `rows × width` (and its attention with
//! `width²`), so padding a 10-token note to the 256 tokens of a long one in the same batch
//! multiplies its cost by 25 for nothing. [`by_length`] sorts the texts by token count
//! first, so texts of similar length run together, and closes a batch when one more text
//! would take `rows × width` past the token budget; [`in_order`] is the naive way (fixed
//! batch size, input order), kept for comparison in the benchmark.

/// Texts that run together in one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Positions of the texts in the caller's input, in the order of the tensor's rows.
    pub indices: Vec<usize>,
    /// The longest of their token counts: every row is padded to it.
    pub width: usize,
}

/// Batches of texts of similar length: the texts sorted by token count (ties keep input
/// order), cut so that `rows × width ≤ max_batch_tokens`. A text longer than the budget
/// on its own runs alone. Every index of `lengths` is in exactly one batch.
pub(crate) fn by_length(lengths: &[usize], max_batch_tokens: usize) -> Vec<Batch> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable: equal lengths keep their input order, so the plan is deterministic.
    order.sort_by_key(|&i| lengths[i]);

    let mut batches = Vec::new();
    let mut current = Batch {
        indices: Vec::new(),
        width: 0,
    };
    for i in order {
        // Ascending order: the new text is the longest so far, so it sets the width.
        let width = lengths[i];
        let rows = current.indices.len() + 1;
        if !current.indices.is_empty() && rows.saturating_mul(width) > max_batch_tokens {
            batches.push(std::mem::replace(
                &mut current,
                Batch {
                    indices: Vec::new(),
                    width: 0,
                },
            ));
        }
        current.indices.push(i);
        current.width = width;
    }
    if !current.indices.is_empty() {
        batches.push(current);
    }
    batches
}

/// Batches of `batch_size` consecutive texts in input order, each padded to its longest:
/// what a simple script does.
pub(crate) fn in_order(lengths: &[usize], batch_size: usize) -> Vec<Batch> {
    let indices: Vec<usize> = (0..lengths.len()).collect();
    indices
        .chunks(batch_size.max(1))
        .map(|chunk| Batch {
            indices: chunk.to_vec(),
            width: chunk.iter().map(|&i| lengths[i]).max().unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic lengths between 2 and 256, like tokenized notes.
    fn lengths(n: usize) -> Vec<usize> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                2 + (x % 255) as usize
            })
            .collect()
    }

    fn assert_partition(batches: &[Batch], n: usize) {
        let mut seen: Vec<usize> = batches
            .iter()
            .flat_map(|b| b.indices.iter().copied())
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..n).collect::<Vec<_>>(),
            "every input in exactly one batch"
        );
    }

    #[test]
    fn batches_respect_the_token_budget() {
        let lengths = lengths(2_000);
        for budget in [256, 1_000, 4_096, 8_192] {
            let batches = by_length(&lengths, budget);
            assert_partition(&batches, lengths.len());
            for batch in &batches {
                let longest = batch.indices.iter().map(|&i| lengths[i]).max().unwrap();
                assert_eq!(batch.width, longest);
                assert!(
                    batch.indices.len() * batch.width <= budget,
                    "budget {budget}: {batch:?}"
                );
            }
        }
    }

    #[test]
    fn similar_lengths_run_together() {
        let lengths = lengths(2_000);
        let batches = by_length(&lengths, 4_096);
        // Sorted: each batch starts at least as long as the previous one ended.
        for pair in batches.windows(2) {
            let first_of_next = lengths[pair[1].indices[0]];
            assert!(first_of_next >= pair[0].width);
        }
        // Far less padding than input order with the same number of batches' worth.
        let padded = |bs: &[Batch]| bs.iter().map(|b| b.indices.len() * b.width).sum::<usize>();
        let naive = in_order(&lengths, 32);
        assert!(
            padded(&batches) * 3 < padded(&naive) * 2,
            "{} vs {}",
            padded(&batches),
            padded(&naive)
        );
    }

    #[test]
    fn a_text_longer_than_the_budget_runs_alone() {
        let batches = by_length(&[3, 300, 4], 100);
        assert_eq!(
            batches,
            vec![
                Batch {
                    indices: vec![0, 2],
                    width: 4
                },
                Batch {
                    indices: vec![1],
                    width: 300
                }
            ]
        );
    }

    #[test]
    fn equal_lengths_keep_input_order() {
        let batches = by_length(&[5, 2, 5, 2], 1_000);
        assert_eq!(
            batches,
            vec![Batch {
                indices: vec![1, 3, 0, 2],
                width: 5
            }]
        );
    }

    #[test]
    fn no_texts_no_batches() {
        assert!(by_length(&[], 100).is_empty());
        assert!(in_order(&[], 32).is_empty());
    }

    #[test]
    fn in_order_keeps_order_and_size() {
        let lengths = lengths(100);
        let batches = in_order(&lengths, 32);
        assert_eq!(
            batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
            [32, 32, 32, 4]
        );
        assert_eq!(batches[1].indices[0], 32);
        assert_partition(&batches, 100);
    }
}
