use super::*;

fn id(n: u64) -> Uuid {
    Uuid::from_u64_pair(0, n)
}

/// Deterministic pseudo-random numbers in [-0.5, 0.5).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

const D: usize = 32;

/// A vector near axis `axis`: the axis plus noise of length about `spread` spread over
/// the last half of the dimensions.
fn near(axis: usize, spread: f32, noise: &mut Noise) -> Vec<f32> {
    let mut v = vec![0.0; D];
    v[axis] = 1.0;
    for x in &mut v[D / 2..] {
        *x += spread * noise.next() * 0.7;
    }
    v
}

/// An owned input.
struct Owned {
    item: Uuid,
    vector: Vec<f32>,
    text: String,
    captured_at: i64,
}

impl Owned {
    fn input(&self) -> ThemeInput<'_> {
        ThemeInput {
            item: self.item,
            vector: &self.vector,
            text: &self.text,
            captured_at: self.captured_at,
        }
    }
}

fn inputs(owned: &[Owned]) -> Vec<ThemeInput<'_>> {
    owned.iter().map(Owned::input).collect()
}

const TOPICS: [&str; 3] = [
    "garden tomatoes soil",
    "dentist molar appointment",
    "project deadline release",
];

/// Groups of `sizes[g]` items near axis `g` (ids `100 g + j`, texts with topic `g`'s
/// words), then `outliers` items each on an axis of its own (ids from 900).
fn groups(sizes: &[usize], outliers: usize) -> Vec<Owned> {
    let mut noise = Noise(0x5eed);
    let mut owned = Vec::new();
    for (g, &size) in sizes.iter().enumerate() {
        for j in 0..size {
            owned.push(Owned {
                item: id(100 * g as u64 + j as u64),
                vector: near(g, 0.5, &mut noise),
                text: format!("Note {j}: the {} and more", TOPICS[g % TOPICS.len()]),
                captured_at: 1_000 + (owned.len() as i64),
            });
        }
    }
    for k in 0..outliers {
        owned.push(Owned {
            item: id(900 + k as u64),
            vector: near(8 + k, 0.5, &mut noise),
            text: format!("Unrelated thought number {k} about the weather"),
            captured_at: 1_000 + (owned.len() as i64),
        });
    }
    owned
}

fn members(theme: &Theme) -> Vec<Uuid> {
    let mut items: Vec<Uuid> = theme.items.iter().map(|i| i.0).collect();
    items.sort();
    items
}

fn ids(range: std::ops::Range<u64>) -> Vec<Uuid> {
    range.map(id).collect()
}

#[test]
fn well_separated_groups_are_found_and_outliers_left_out() {
    let owned = groups(&[6, 5, 4], 3);
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    assert_eq!(found.len(), 3, "{found:?}");
    // Largest first.
    assert_eq!(members(&found[0]), ids(0..6));
    assert_eq!(members(&found[1]), ids(100..105));
    assert_eq!(members(&found[2]), ids(200..204));
    for theme in &found {
        assert!(theme.cohesion > 0.5 && theme.cohesion <= 1.0, "{theme:?}");
        for pair in theme.items.windows(2) {
            assert!(pair[0].1 >= pair[1].1, "most central first");
        }
        for &(_, similarity) in &theme.items {
            assert!((-1.0..=1.0).contains(&similarity));
            // The centroid is closer to each member than the members to each other.
            assert!(similarity >= theme.cohesion - 0.2);
        }
    }
}

#[test]
fn labels_are_the_themes_own_words() {
    let owned = groups(&[6, 5, 4], 3);
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    for (theme, topic) in found.iter().zip(TOPICS) {
        // The three topic words are in every item of the theme and nowhere else; the
        // others ("note", "the", "and", "more", digits) are stopwords, too short or
        // everywhere.
        let mut keywords = theme.keywords.clone();
        keywords.sort();
        let mut expected: Vec<String> = topic.split(' ').map(str::to_owned).collect();
        expected.sort();
        assert_eq!(keywords, expected);
        // Equal scores: alphabetical.
        assert_eq!(theme.label, expected.join(", "));
    }
}

#[test]
fn keywords_prefer_words_of_the_theme_over_words_of_everyone() {
    let mut owned = groups(&[4, 4], 0);
    // "coffee" is in every text; "compost" in two of the four garden notes only.
    for (k, o) in owned.iter_mut().enumerate() {
        o.text = match k {
            0 | 1 => "Coffee, then the garden bed: compost".to_string(),
            2 | 3 => "Coffee, then the garden bed".to_string(),
            _ => "Coffee, then dentist visit".to_string(),
        };
    }
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    assert_eq!(found.len(), 2);
    let (garden, dentist) = if members(&found[0]) == ids(0..4) {
        (&found[0], &found[1])
    } else {
        (&found[1], &found[0])
    };
    assert_eq!(garden.keywords, ["bed", "garden", "compost", "coffee"]);
    assert_eq!(garden.label, "bed, garden, compost");
    assert_eq!(dentist.keywords, ["dentist", "visit", "coffee"]);
    assert_eq!(dentist.label, "dentist, visit");
    // A word in one note only is no keyword.
    let mut owned = groups(&[3], 0);
    owned[0].text = "alpha beta".into();
    owned[1].text = "alpha gamma".into();
    owned[2].text = "delta".into();
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    assert_eq!(found[0].keywords, ["alpha"]);
    assert_eq!(found[0].label, "alpha");
}

#[test]
fn the_same_inputs_in_any_order_give_the_same_themes() {
    let owned = groups(&[6, 5, 4, 3], 4);
    let forward = inputs(&owned);
    let first = themes(&forward, &ThemeOptions::default());
    assert_eq!(first.len(), 4);
    assert_eq!(first, themes(&forward, &ThemeOptions::default()));
    let mut reversed = forward.clone();
    reversed.reverse();
    assert_eq!(first, themes(&reversed, &ThemeOptions::default()));
    let mut interleaved: Vec<ThemeInput> = forward.iter().step_by(2).copied().collect();
    interleaved.extend(forward.iter().skip(1).step_by(2).copied());
    assert_eq!(first, themes(&interleaved, &ThemeOptions::default()));
}

#[test]
fn nothing_or_one_item_makes_no_theme() {
    assert!(themes(&[], &ThemeOptions::default()).is_empty());
    let owned = groups(&[1], 0);
    let options = ThemeOptions {
        min_items: 1,
        ..ThemeOptions::default()
    };
    assert!(themes(&inputs(&owned), &options).is_empty());
    // Two copies of one item are one item.
    let twice = [owned[0].input(), owned[0].input()];
    let options = ThemeOptions {
        min_items: 2,
        ..ThemeOptions::default()
    };
    assert!(themes(&twice, &options).is_empty());
}

#[test]
fn groups_smaller_than_min_items_are_not_themes() {
    let owned = groups(&[5, 3, 2], 0);
    let sizes = |min_items| {
        let options = ThemeOptions {
            min_items,
            ..ThemeOptions::default()
        };
        themes(&inputs(&owned), &options)
            .iter()
            .map(|t| t.items.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(sizes(3), [5, 3]);
    assert_eq!(sizes(4), [5]);
    assert_eq!(sizes(2), [5, 3, 2]);
    // A theme has at least two items, whatever the option says.
    assert_eq!(sizes(0), [5, 3, 2]);
    assert_eq!(sizes(6), Vec::<usize>::new());
}

#[test]
fn at_most_max_themes_the_largest() {
    let owned = groups(&[3, 5, 4], 0);
    let options = ThemeOptions {
        max_themes: 2,
        ..ThemeOptions::default()
    };
    let found = themes(&inputs(&owned), &options);
    assert_eq!(found.len(), 2);
    assert_eq!(members(&found[0]), ids(100..105));
    assert_eq!(members(&found[1]), ids(200..204));
    let options = ThemeOptions {
        max_themes: 0,
        ..ThemeOptions::default()
    };
    assert!(themes(&inputs(&owned), &options).is_empty());
}

#[test]
fn equal_sizes_go_to_the_more_cohesive() {
    let mut noise = Noise(7);
    let mut owned = Vec::new();
    for (g, spread) in [(0usize, 0.6f32), (1, 0.2)] {
        for j in 0..4 {
            owned.push(Owned {
                item: id(100 * g as u64 + j),
                vector: near(g, spread, &mut noise),
                text: String::new(),
                captured_at: 0,
            });
        }
    }
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    assert_eq!(found.len(), 2);
    assert_eq!(members(&found[0]), ids(100..104));
    assert!(found[0].cohesion > found[1].cohesion);
    // No words at all: no keyword, an empty label.
    assert!(found[0].keywords.is_empty());
    assert_eq!(found[0].label, "");
}

#[test]
fn vectors_without_direction_or_of_another_length_are_ignored() {
    let mut owned = groups(&[4, 3], 0);
    let with_one = |value: f32| {
        let mut v = vec![1.0; D];
        v[3] = value;
        v
    };
    let bad: [Vec<f32>; 6] = [
        vec![0.0; D],
        vec![f32::NAN; D],
        with_one(f32::INFINITY),
        with_one(f32::NAN),
        Vec::new(),
        vec![1.0; D + 1],
    ];
    for (k, vector) in bad.into_iter().enumerate() {
        owned.push(Owned {
            item: id(500 + k as u64),
            vector,
            text: "garden tomatoes soil".into(),
            // Older than the rest, so the most recent valid vector sets the length.
            captured_at: -(k as i64),
        });
    }
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    assert_eq!(found.len(), 2);
    assert_eq!(members(&found[0]), ids(0..4));
    assert_eq!(members(&found[1]), ids(100..103));
    // Only bad vectors: nothing.
    let bad: Vec<ThemeInput> = inputs(&owned[7..]);
    assert!(themes(&bad, &ThemeOptions::default()).is_empty());
    // A similarity that is not a number means the default.
    let options = ThemeOptions {
        similarity: f32::NAN,
        ..ThemeOptions::default()
    };
    assert_eq!(themes(&inputs(&owned), &options), found);
}

#[test]
fn the_threshold_decides_how_close_is_a_theme() {
    let owned = groups(&[4, 4], 0);
    // Groups at right angles: average similarity about 0 between them.
    let with = |similarity| {
        let options = ThemeOptions {
            similarity,
            ..ThemeOptions::default()
        };
        themes(&inputs(&owned), &options)
            .iter()
            .map(|t| t.items.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(with(0.35), [4, 4]);
    assert_eq!(with(-0.5), [8]);
    assert_eq!(with(0.999), Vec::<usize>::new());
}

#[test]
fn only_the_most_recent_inputs_are_considered() {
    // MAX_THEME_INPUTS recent items on one axis, and older ones on another: the older
    // ones are past the cap, so they make no theme. Short vectors keep the test fast.
    let mut owned: Vec<Owned> = (0..MAX_THEME_INPUTS as u64 + 5)
        .map(|k| {
            let recent = k < MAX_THEME_INPUTS as u64;
            Owned {
                item: id(k),
                vector: if recent {
                    vec![1.0, 0.0, 0.1]
                } else {
                    vec![0.0, 1.0, 0.1]
                },
                text: String::new(),
                captured_at: if recent { 10_000 } else { 1 },
            }
        })
        .collect();
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].items.len(), MAX_THEME_INPUTS);
    // Five fewer recent ones: the old ones fit, and are a theme of their own.
    owned.drain(..5);
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].items.len(), 5);
}

/// Average linkage the slow way: merge the two groups with the highest average pairwise
/// similarity until it is below the threshold.
fn naive_average_linkage(vectors: &[Vec<f32>], threshold: f32) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = (0..vectors.len()).map(|i| vec![i]).collect();
    loop {
        let mut best: Option<(usize, usize, f32)> = None;
        for a in 0..groups.len() {
            for b in a + 1..groups.len() {
                let mut sum = 0.0f64;
                for &i in &groups[a] {
                    for &j in &groups[b] {
                        sum += f64::from(dot(&vectors[i], &vectors[j]));
                    }
                }
                let average = (sum / (groups[a].len() * groups[b].len()) as f64) as f32;
                if best.is_none_or(|(_, _, s)| average > s) {
                    best = Some((a, b, average));
                }
            }
        }
        match best {
            Some((a, b, s)) if s >= threshold => {
                let moved = groups.remove(b);
                groups[a].extend(moved);
            }
            _ => break,
        }
    }
    for group in &mut groups {
        group.sort_unstable();
    }
    groups.sort();
    groups
}

#[test]
fn the_nearest_neighbour_chain_merges_as_the_greedy_algorithm_does() {
    let mut noise = Noise(42);
    for round in 0..6 {
        // Loose groups around a few axes, so that merges happen at many levels.
        let vectors: Vec<Vec<f32>> = (0..40)
            .map(|k| {
                let v = near(k % (2 + round), 1.2, &mut noise);
                let norm = dot(&v, &v).sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect();
        let units: Vec<f32> = vectors.iter().flatten().copied().collect();
        for threshold in [0.1, 0.3, 0.5, 0.7] {
            let mut fast = average_linkage(&units, D, threshold);
            fast.sort();
            assert_eq!(
                fast,
                naive_average_linkage(&vectors, threshold),
                "round {round}, threshold {threshold}"
            );
        }
    }
}

#[test]
fn item_vector_is_the_normalised_mean_of_the_chunks() {
    let v = item_vector(&[vec![3.0, 0.0], vec![0.0, 1.0]]).expect("a vector");
    // Each chunk counts as a unit vector: the mean points at 45°.
    let half = std::f32::consts::FRAC_1_SQRT_2;
    assert!(
        (v[0] - half).abs() < 1e-6 && (v[1] - half).abs() < 1e-6,
        "{v:?}"
    );
    assert_eq!(item_vector(&[vec![0.0, 2.0]]), Some(vec![0.0, 1.0]));
    // Chunks without direction are skipped.
    assert_eq!(
        item_vector(&[vec![0.0, 0.0], vec![f32::NAN, 1.0], vec![0.0, 2.0]]),
        Some(vec![0.0, 1.0])
    );
    assert_eq!(item_vector(&[]), None);
    assert_eq!(item_vector(&[vec![]]), None);
    assert_eq!(item_vector(&[vec![0.0, 0.0]]), None);
    assert_eq!(item_vector(&[vec![1.0, 0.0], vec![1.0, 0.0, 0.0]]), None);
    // Opposite chunks cancel out.
    assert_eq!(item_vector(&[vec![1.0, 0.0], vec![-1.0, 0.0]]), None);
}

#[test]
fn debug_prints_no_text_and_no_label() {
    let owned = groups(&[4], 0);
    let input = format!("{:?}", owned[0].input());
    assert!(
        !input.contains("garden") && !input.contains("tomatoes"),
        "{input}"
    );
    assert!(input.contains("text_bytes"));
    let found = themes(&inputs(&owned), &ThemeOptions::default());
    assert!(found[0].label.contains("garden"));
    let theme = format!("{:?}", found[0]);
    for word in ["garden", "tomatoes", "soil"] {
        assert!(!theme.contains(word), "{theme}");
    }
    assert!(theme.contains("items: 4"), "{theme}");
}
