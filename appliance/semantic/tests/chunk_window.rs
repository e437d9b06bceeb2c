//! Default chunks fit the model's window: each chunk of many kinds of text, tokenized by
//! the model's own tokenizer (`tokenizer.json`), is at most 256 tokens with `[CLS]` and
//! `[SEP]`, so nothing of it is cut off before embedding. Skipped, with the reason
//! printed, when the model's files are absent (see `common`).

mod common;

use cv_semantic::{ChunkOptions, chunk, estimate_tokens};
use tokenizers::Tokenizer;

/// all-MiniLM-L6-v2's window (`cv_inference::MAX_TOKENS`).
const WINDOW: usize = 256;

/// Long texts of every kind the estimate must handle.
fn samples() -> Vec<(&'static str, String)> {
    let english = "The committee met on Tuesday to discuss the quarterly budget, the new \
        hiring plan and the renovation of the third floor. Everyone agreed that the \
        renovation should wait until spring, because the contractor's estimate was far \
        higher than expected. Meanwhile, the marketing team presented preliminary results \
        from the customer survey: satisfaction improved, although delivery times remain \
        the most frequent complaint. ";
    let rare = "Pharmacokinetics, immunohistochemistry and electroencephalography; \
        photosynthesising cyanobacteria; counterrevolutionaries' \
        uncharacteristically idiosyncratic anthropomorphisation. ";
    let made_up = "zanbelwex kalomine shitorris fenhojy quivendor staumga exalri \
        poventaka rishiloqui dorbelfen. ";
    let numbers = "Invoice 2024-117 totals 3,482.75 EUR; IBAN DE89370400440532013000; \
        call +49 30 1234567 at 09:45 or 17:30, order #88213, ref 7f3a9c2e. ";
    let links = "See https://example.com/path/to/some-page?query=value&other=1#section and \
        mailto:someone@example.org or ftp://files.example.net/pub/archive.tar.gz now. ";
    let accents = "Crème brûlée, façade, naïve coöperation, Ångström, Øresund, São Paulo, \
        Zürich, Kraków, Dvořák, İstanbul, Smørrebrød. ";
    let german = "Die Donaudampfschifffahrtsgesellschaft veröffentlichte gestern eine \
        Pressemitteilung über Geschwindigkeitsbegrenzungen und Krankenversicherungsbeiträge. \
        Wir treffen uns morgen früh beim Bäcker. ";
    let finnish = "Lentokonesuihkuturbiinimoottoriapumekaanikkoaliupseerioppilas kävi eilen \
        kaupassa ostamassa maitoa ja leipää. ";
    let cyrillic = "Съешь же ещё этих мягких французских булок, да выпей чаю. ";
    let greek = "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ";
    let cjk = "我能吞下玻璃而不伤身体。私はガラスを食べられます。それは私を傷つけません。나는 유리를 먹을 수 있어요. ";
    let emoji = "Party tonight 🎉🎉 bring snacks 🍕🍔🌮 and drinks 🍺🍷 see you 👋😀👨‍👩‍👧‍👦! ";
    let code = "fn main() { let x: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", x); } // done; ";
    let mixed = [
        english, rare, made_up, numbers, links, accents, german, finnish, cyrillic, greek, cjk,
        emoji, code,
    ]
    .concat();
    vec![
        ("english", english.repeat(20)),
        ("rare words", rare.repeat(40)),
        ("made-up words", made_up.repeat(60)),
        ("numbers", numbers.repeat(40)),
        ("links", links.repeat(40)),
        ("accents", accents.repeat(40)),
        ("german", german.repeat(30)),
        ("finnish", finnish.repeat(40)),
        ("cyrillic", cyrillic.repeat(60)),
        ("greek", greek.repeat(80)),
        ("cjk", cjk.repeat(30)),
        ("emoji", emoji.repeat(50)),
        ("code", code.repeat(50)),
        ("mixed", mixed.repeat(6)),
        ("one long sentence", english.replace(". ", ", ").repeat(20)),
        ("a long key", "0123456789abcdef".repeat(200)),
        ("a long word", "abcdefghij".repeat(300)),
    ]
}

#[test]
fn default_chunks_fit_the_models_window() {
    let Some(files) = common::model_files() else {
        return;
    };
    let mut tokenizer = Tokenizer::from_file(&files.tokenizer).expect("the tokenizer loads");
    tokenizer
        .with_truncation(None)
        .expect("truncation can be turned off");
    tokenizer.with_padding(None);
    let opts = ChunkOptions::default();
    let mut report = Vec::new();
    let mut over = Vec::new();
    for (name, text) in samples() {
        let chunks = chunk(&text, &opts);
        assert!(chunks.len() > 1, "{name}: {} chunk", chunks.len());
        let mut most = 0;
        let mut real_total = 0;
        let mut estimated_total = 0;
        for c in &chunks {
            let real = tokenizer
                .encode(c.text, true)
                .expect("tokenizes")
                .get_ids()
                .len();
            most = most.max(real);
            real_total += real - 2;
            estimated_total += estimate_tokens(c.text);
        }
        let words: usize = chunks
            .iter()
            .map(|c| c.text.split_whitespace().count())
            .sum();
        report.push(format!(
            "{name:>18}: {:>3} chunks, largest {most:>3} tokens, real/estimated {:.2}, {:.0} words and {:.0} chars per chunk",
            chunks.len(),
            real_total as f64 / estimated_total as f64,
            words as f64 / chunks.len() as f64,
            chunks.iter().map(|c| c.text.chars().count()).sum::<usize>() as f64 / chunks.len() as f64,
        ));
        if most > WINDOW {
            over.push(name);
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        over.is_empty(),
        "chunks longer than the model's window of {WINDOW} tokens: {over:?}"
    );
}
