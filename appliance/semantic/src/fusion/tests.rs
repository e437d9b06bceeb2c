use super::*;

fn id(n: u64) -> Uuid {
    Uuid::from_u64_pair(0, n)
}

#[test]
fn rrf_sums_reciprocal_ranks_and_says_why_each_item_matched() {
    let bm25 = [(id(1), 9.0), (id(2), 5.0), (id(3), 1.0)];
    let vector = [(id(3), 0.9), (id(4), 0.8), (id(1), 0.1)];
    let hits = fuse_rrf(&bm25, &vector, 60.0);
    let by = |n| hits.iter().find(|h| h.item == id(n)).copied().unwrap();
    assert_eq!(hits.len(), 4);
    assert_eq!(by(1).matched, Matched::Both);
    assert_eq!((by(1).bm25_rank, by(1).vector_rank), (Some(1), Some(3)));
    assert!((by(1).score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
    assert_eq!(by(2).matched, Matched::Words);
    assert_eq!(by(2).vector_rank, None);
    assert_eq!(by(3).matched, Matched::Both);
    assert_eq!(by(4).matched, Matched::Meaning);
    assert_eq!(by(4).bm25_rank, None);
    // Both lists agree on 1 and 3 more than on 2 and 4.
    assert_eq!(hits[0].item, id(1));
    assert_eq!(hits[1].item, id(3));
    for pair in hits.windows(2) {
        assert!(pair[0].score >= pair[1].score);
    }
}

#[test]
fn ties_go_to_the_better_rank_then_the_id() {
    let hits = fuse_rrf(&[(id(2), 1.0)], &[(id(1), 0.5)], 60.0);
    // Same score, same rank: by id.
    assert_eq!(hits[0].item, id(1));
    let hits = fuse_rrf(&[(id(5), 1.0), (id(2), 1.0)], &[(id(1), 0.5)], 60.0);
    assert_eq!(
        hits.iter().map(|h| h.item).collect::<Vec<_>>(),
        [id(1), id(5), id(2)]
    );
}

#[test]
fn the_similarity_cut_drops_weak_meaning_matches() {
    let fusion = Fusion {
        min_similarity: Some(0.3),
        ..Fusion::default()
    };
    let bm25 = [(id(1), 3.0)];
    let vector = [(id(2), 0.5), (id(3), 0.2), (id(1), 0.1)];
    let hits = fusion.fuse(&bm25, &vector);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].item, id(1));
    // A weak vector hit on a words match does not make it "both".
    assert_eq!(hits[0].matched, Matched::Words);
    assert_eq!(hits[0].vector_rank, None);
    assert_eq!(hits[1].item, id(2));
    assert_eq!(hits[1].matched, Matched::Meaning);
    assert_eq!(hits[1].vector_rank, Some(1));
}

#[test]
fn weights_tilt_the_fusion_and_duplicates_count_once() {
    let fusion = Fusion {
        bm25_weight: 2.0,
        min_similarity: None,
        ..Fusion::default()
    };
    let hits = fusion.fuse(&[(id(1), 1.0), (id(1), 0.5)], &[(id(2), 0.9), (id(2), 0.8)]);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].item, id(1));
    assert!((hits[0].score - 2.0 / 61.0).abs() < 1e-7);
    assert!((hits[1].score - 1.0 / 61.0).abs() < 1e-7);
    assert!(fuse_rrf(&[], &[], RRF_K).is_empty());
}
