use super::*;

/// A deterministic pseudo-random unit vector.
fn vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = dot(&v, &v).sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn id(n: u64) -> Uuid {
    Uuid::from_u64_pair(0, n)
}

/// The score the index computes, the slow way: both vectors quantised, their codes
/// multiplied one by one.
fn quantised_cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut codes_a, mut codes_b) = (Vec::new(), Vec::new());
    let scale_a = quantise(a, dot(a, a).sqrt(), &mut codes_a);
    let scale_b = quantise(b, dot(b, b).sqrt(), &mut codes_b);
    let products: i32 = codes_a
        .iter()
        .zip(&codes_b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    products as f32 * (scale_a * scale_b)
}

/// The answer, computed naively: every item's best chunk, sorted.
fn naive(index_items: &[(Uuid, Vec<Vec<f32>>)], query: &[f32], k: usize) -> Vec<(Uuid, usize)> {
    let mut best: Vec<(Uuid, usize, f32)> = index_items
        .iter()
        .filter(|(_, chunks)| !chunks.is_empty())
        .map(|(item, chunks)| {
            let (chunk, score) = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| (i, quantised_cosine(query, c)))
                .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
            (*item, chunk, score)
        })
        .collect();
    best.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    best.into_iter().take(k).map(|(i, c, _)| (i, c)).collect()
}

#[test]
fn dot_matches_a_plain_sum() {
    for len in [0, 1, 7, 16, 17, 100, 384] {
        let a = vector(len as u64 + 1, len.max(1));
        let b = vector(len as u64 + 2, len.max(1));
        let (a, b) = (&a[..len], &b[..len]);
        let plain: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!((dot(a, b) - plain).abs() < 1e-5, "len {len}");
    }
}

#[test]
fn dot_i8_matches_a_plain_sum_at_the_extremes() {
    for len in [0, 5, 16, 31, 384] {
        let a: Vec<i8> = (0..len)
            .map(|i| if i % 2 == 0 { -127 } else { 127 })
            .collect();
        let b: Vec<i8> = (0..len).map(|i| ((i * 37) % 255) as u8 as i8).collect();
        let plain: i32 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum();
        assert_eq!(dot_i8(&a, &b), plain, "len {len}");
        assert_eq!(dot_i8(&a, &a), 127 * 127 * len);
    }
}

#[test]
fn quantised_scores_are_close_to_exact_cosines() {
    let mut worst = 0.0f32;
    for seed in 0..500 {
        let a = vector(seed, DIMENSIONS);
        let b = vector(seed + 10_000, DIMENSIONS);
        // Also pairs that are close, where ranking matters most.
        let c: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + 0.3 * y).collect();
        for (x, y) in [(&a, &b), (&a, &c)] {
            let exact = dot(x, y) / (dot(x, x).sqrt() * dot(y, y).sqrt());
            worst = worst.max((quantised_cosine(x, y) - exact).abs());
        }
    }
    assert!(worst < 0.01, "worst error {worst}");
}

#[test]
fn search_finds_the_best_chunk_per_item_and_ranks_items_by_it() {
    let mut index = VectorIndex::new(8);
    let query = vector(1, 8);
    let far = vector(2, 8).iter().map(|x| -x).collect::<Vec<_>>();
    // Item 1: its second chunk is the query itself; item 2 is a bit off; item 3 far.
    let mut near = query.clone();
    near[0] += 0.3;
    index
        .upsert(id(1), vec![far.clone(), query.clone()])
        .unwrap();
    index.upsert(id(2), vec![near]).unwrap();
    index.upsert(id(3), vec![far]).unwrap();
    let hits = index.search(&query, 10, |_| true);
    assert_eq!(hits.len(), 3);
    assert_eq!((hits[0].item, hits[0].chunk_index), (id(1), 1));
    assert!((hits[0].score - 1.0).abs() < 1e-2, "{}", hits[0].score);
    assert_eq!(hits[1].item, id(2));
    assert_eq!(hits[2].item, id(3));
    assert!(hits[0].score >= hits[1].score && hits[1].score >= hits[2].score);
    // k and the filter.
    assert_eq!(index.search(&query, 1, |_| true).len(), 1);
    let hits = index.search(&query, 10, |item| item != id(1));
    assert_eq!(hits[0].item, id(2));
    assert_eq!(hits.len(), 2);
    assert!(index.search(&query, 0, |_| true).is_empty());
}

#[test]
fn vectors_are_normalised_and_bad_ones_refused_without_change() {
    let mut index = VectorIndex::new(4);
    index.upsert(id(1), vec![vec![2.0, 0.0, 0.0, 0.0]]).unwrap();
    let hits = index.search(&[3.0, 0.0, 0.0, 0.0], 1, |_| true);
    assert!(
        (hits[0].score - 1.0).abs() < 1e-6,
        "one component quantises exactly"
    );
    assert_eq!(
        index.upsert(id(1), vec![vec![1.0; 4], vec![1.0; 3]]),
        Err(VectorError::Dimensions {
            chunk: 1,
            found: 3,
            expected: 4
        })
    );
    assert_eq!(
        index.upsert(id(1), vec![vec![0.0; 4]]),
        Err(VectorError::Degenerate { chunk: 0 })
    );
    assert_eq!(
        index.upsert(id(1), vec![vec![f32::NAN, 1.0, 0.0, 0.0]]),
        Err(VectorError::Degenerate { chunk: 0 })
    );
    assert_eq!(index.len(), 1, "the item kept its old vector");
    // A query of the wrong length, or of zeros, finds nothing.
    assert!(index.search(&[1.0; 3], 1, |_| true).is_empty());
    assert!(index.search(&[0.0; 4], 1, |_| true).is_empty());
}

#[test]
fn upserts_and_removals_keep_the_index_exact() {
    const D: usize = 24;
    let mut index = VectorIndex::new(D);
    let mut truth: Vec<(Uuid, Vec<Vec<f32>>)> = Vec::new();
    let mut seed = 100;
    let mut next = || {
        seed += 1;
        seed
    };
    // A churn of inserts, replacements (more or fewer chunks) and removals.
    for round in 0..400u64 {
        let item = id(round % 37);
        match round % 5 {
            0..=2 => {
                let chunks: Vec<Vec<f32>> = (0..(round % 4)).map(|_| vector(next(), D)).collect();
                index.upsert(item, chunks.clone()).unwrap();
                truth.retain(|(i, _)| *i != item);
                if !chunks.is_empty() {
                    truth.push((item, chunks));
                }
            }
            _ => {
                let had = truth.iter().any(|(i, _)| *i == item);
                assert_eq!(index.remove(item), had);
                truth.retain(|(i, _)| *i != item);
            }
        }
        let chunks: usize = truth.iter().map(|(_, c)| c.len()).sum();
        assert_eq!(index.len(), chunks);
        assert_eq!(index.items(), truth.len());
        let query = vector(next(), D);
        let got: Vec<(Uuid, usize)> = index
            .search(&query, 5, |_| true)
            .iter()
            .map(|h| (h.item, h.chunk_index))
            .collect();
        assert_eq!(got, naive(&truth, &query, 5), "round {round}");
    }
}

#[test]
fn removing_everything_empties_the_index() {
    let mut index = VectorIndex::default();
    for n in 0..10 {
        index.upsert(id(n), vec![vector(n, DIMENSIONS); 3]).unwrap();
    }
    assert_eq!(index.len(), 30);
    assert!(index.memory_bytes() >= 30 * DIMENSIONS);
    for n in 0..10 {
        assert!(index.remove(id(n)));
    }
    assert!(!index.remove(id(0)));
    assert!(index.is_empty());
    assert!(index.search(&vector(1, DIMENSIONS), 3, |_| true).is_empty());
    index.shrink_to_fit();
}

#[test]
fn an_items_vectors_come_back_as_stored_within_rounding() {
    let mut index = VectorIndex::new(16);
    let chunks = vec![vector(1, 16), vector(2, 16)];
    index.upsert(id(1), chunks.clone()).unwrap();
    index.upsert(id(2), vec![vector(3, 16)]).unwrap();
    index.remove(id(2));
    let back = index.item_vectors(id(1)).unwrap();
    assert_eq!(back.len(), 2);
    for (original, stored) in chunks.iter().zip(&back) {
        let norm = dot(original, original).sqrt();
        for (a, b) in original.iter().zip(stored) {
            assert!((a / norm - b).abs() < 0.01, "{a} vs {b}");
        }
    }
    assert!(index.item_vectors(id(2)).is_none());
}

#[test]
fn an_items_vectors_come_back_close_to_what_was_stored() {
    let mut index = VectorIndex::new(64);
    let chunks = vec![vector(1, 64), vector(2, 64)];
    index.upsert(id(1), chunks.clone()).unwrap();
    index.upsert(id(2), vec![vector(3, 64)]).unwrap();
    index.remove(id(1));
    index.upsert(id(1), chunks.clone()).unwrap();
    let back = index.item_vectors(id(1)).unwrap();
    assert_eq!(back.len(), 2);
    for (a, b) in chunks.iter().zip(&back) {
        assert!(dot(a, b) > 0.999, "{}", dot(a, b));
    }
    // Searching with them finds the item itself first.
    assert_eq!(index.search(&back[1], 1, |_| true)[0].item, id(1));
    assert!(index.item_vectors(id(9)).is_none());
}
