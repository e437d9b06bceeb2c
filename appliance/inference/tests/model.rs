//! The engine with the real model: meaning, shape, batching and order, and its errors.
//! Skipped, with the reason printed, when the model's files are absent (see `common`).

mod common;

use common::{cosine, embedder, max_abs_diff, model_files, varied_sentences};
use cv_inference::{Batching, EmbedError, EmbedOptions, Embedder, ExecutionProvider, ModelFiles};

#[test]
fn similar_sentences_are_closer_than_unrelated_ones() {
    let Some(mut embedder) = embedder() else {
        return;
    };
    // (anchor, paraphrase, unrelated)
    let triples = [
        (
            "The cat sits on the mat.",
            "A kitten is resting on a rug.",
            "Quarterly tax filings are due in April.",
        ),
        (
            "Buy milk and eggs tomorrow.",
            "Remember to get groceries: eggs, milk.",
            "The spacecraft entered orbit around Mars.",
        ),
        (
            "My knee hurts after running.",
            "Pain in the knee following a jog.",
            "The recipe needs two cups of flour.",
        ),
        (
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "Tomatoes grow best in full sun.",
        ),
    ];
    for (anchor, paraphrase, unrelated) in triples {
        let v = embedder.embed(&[anchor, paraphrase, unrelated]).unwrap();
        let close = cosine(&v[0], &v[1]);
        let far = cosine(&v[0], &v[2]);
        assert!(
            close > far + 0.2,
            "{anchor:?}: paraphrase {close}, unrelated {far}"
        );
    }
}

#[test]
fn embeddings_are_unit_length_with_384_dimensions() {
    let Some(mut embedder) = embedder() else {
        return;
    };
    assert_eq!(embedder.dimensions(), 384);
    let sentences = varied_sentences();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts).unwrap();
    assert_eq!(vectors.len(), texts.len());
    for (text, vector) in texts.iter().zip(&vectors) {
        assert_eq!(vector.len(), 384);
        assert!(vector.iter().all(|x| x.is_finite()));
        let length = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-5, "length {length} for {text:?}");
    }
}

#[test]
fn batch_of_mixed_lengths_equals_one_by_one() {
    let Some(mut embedder) = embedder() else {
        return;
    };
    let sentences = varied_sentences();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let batched = embedder.embed(&texts).unwrap();
    let single: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| embedder.embed(&[t]).unwrap().remove(0))
        .collect();
    let diff = max_abs_diff(&batched, &single);
    eprintln!("batched vs one by one: max abs diff {diff:e}");
    assert!(diff < 1e-5, "max abs diff {diff}");
}

#[test]
fn output_order_is_input_order() {
    let Some(mut embedder) = embedder() else {
        return;
    };
    let sentences = varied_sentences();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let forward = embedder.embed(&texts).unwrap();
    let reversed_texts: Vec<&str> = texts.iter().rev().copied().collect();
    let mut backward = embedder.embed(&reversed_texts).unwrap();
    backward.reverse();
    assert!(max_abs_diff(&forward, &backward) < 1e-5);
    // Distinct texts give distinct vectors, so a permutation would have shown. ("" and
    // "   " are the same tokens, [CLS] [SEP].)
    for i in 0..texts.len() {
        for j in i + 1..texts.len() {
            if texts[i].trim() != texts[j].trim() {
                assert!(cosine(&forward[i], &forward[j]) < 0.9999, "{i} and {j}");
            }
        }
    }
}

#[test]
fn in_order_batching_gives_the_same_vectors() {
    let Some(files) = model_files() else { return };
    let Some(mut by_length) = embedder() else {
        return;
    };
    let options = EmbedOptions {
        intra_threads: 1,
        batching: Batching::InOrder { batch_size: 4 },
        ..EmbedOptions::default()
    };
    let mut in_order = Embedder::load(&files, &options).unwrap();
    let sentences = varied_sentences();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let diff = max_abs_diff(
        &by_length.embed(&texts).unwrap(),
        &in_order.embed(&texts).unwrap(),
    );
    assert!(diff < 1e-5, "max abs diff {diff}");
}

#[test]
fn a_tight_token_budget_still_embeds_everything() {
    let Some(files) = model_files() else { return };
    let options = EmbedOptions {
        intra_threads: 1,
        max_batch_tokens: 16,
        ..EmbedOptions::default()
    };
    let mut embedder = Embedder::load(&files, &options).unwrap();
    let sentences = varied_sentences();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts).unwrap();
    assert_eq!(vectors.len(), texts.len());
    assert!(vectors.iter().all(|v| v.len() == 384));
}

#[test]
fn nothing_in_nothing_out() {
    let Some(mut embedder) = embedder() else {
        return;
    };
    assert!(embedder.embed(&[]).unwrap().is_empty());
}

#[test]
fn runs_on_the_cpu_and_says_so() {
    let Some(files) = model_files() else { return };
    let Some(shared) = embedder() else { return };
    assert_eq!(shared.execution_provider(), "cpu");
    assert_eq!(shared.fallback_reason(), None, "the CPU was asked for");
    drop(shared);
    // The runtime scripts/fetch-model installs has no CUDA provider: asking for CUDA
    // falls back to the CPU, and the engine reports what it really uses.
    let options = EmbedOptions {
        execution_provider: ExecutionProvider::Cuda,
        ..EmbedOptions::default()
    };
    let embedder = Embedder::load(&files, &options).unwrap();
    assert_eq!(embedder.execution_provider(), "cpu");
    let why = embedder.fallback_reason().expect("why not CUDA");
    assert!(why.starts_with("CUDA is not usable: "), "{why}");
    assert!(!why.contains("[ONNXRuntimeError]"), "{why}");
    let debug = format!("{embedder:?}");
    assert!(debug.contains("cpu"), "{debug}");
}

#[test]
fn a_second_runtime_library_is_refused() {
    let Some(files) = model_files() else { return };
    // Make sure the runtime is loaded from the real path first.
    drop(embedder());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(cv_inference::RUNTIME_FILE);
    std::fs::copy(&files.runtime, &copy).unwrap();
    let other = ModelFiles {
        runtime: copy.clone(),
        ..files
    };
    let error = Embedder::load(&other, &EmbedOptions::default()).unwrap_err();
    assert!(matches!(error, EmbedError::RuntimeLoad { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&copy.display().to_string()) && message.contains("already loaded"),
        "{message}"
    );
}

#[test]
fn errors_name_the_file() {
    let Some(files) = model_files() else { return };
    drop(embedder());
    let missing = ModelFiles {
        runtime: "/nonexistent/libonnxruntime.so.1.31.1".into(),
        ..files.clone()
    };
    let error = Embedder::load(&missing, &EmbedOptions::default()).unwrap_err();
    assert!(matches!(error, EmbedError::RuntimeLoad { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("/nonexistent/libonnxruntime.so.1.31.1"),
        "{error}"
    );

    let not_a_model = ModelFiles {
        model: files.tokenizer.clone(),
        ..files.clone()
    };
    let error = Embedder::load(&not_a_model, &EmbedOptions::default()).unwrap_err();
    assert!(matches!(error, EmbedError::ModelLoad { .. }), "{error:?}");
    assert!(error.to_string().contains("tokenizer.json"), "{error}");

    let not_a_tokenizer = ModelFiles {
        tokenizer: files.model.clone(),
        ..files
    };
    let error = Embedder::load(&not_a_tokenizer, &EmbedOptions::default()).unwrap_err();
    assert!(
        matches!(error, EmbedError::TokenizerLoad { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("model.onnx"), "{error}");
}
