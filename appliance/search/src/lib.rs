//! Full-text search over an unlocked vault, held in RAM only.
//!
//! The vault keeps only ciphertext in PostgreSQL. Once a person unlocks their vault, the
//! vault service decrypts their items and builds a [`SearchIndex`] from them
//! ([`SearchIndex::build`]); while the vault stays unlocked, every capture, edit and
//! deletion is mirrored into it ([`SearchIndex::upsert`], [`SearchIndex::remove`]).
//!
//! **RAM only.** The index lives in a tantivy `RamDirectory`: segments are heap buffers
//! of this process, and tantivy is built without its mmap directory (and so without any
//! temporary-file support), so no plaintext, term list or stored text is ever written to
//! disk. The plaintext therefore lives in this process's memory for as long as the vault
//! is unlocked; locking drops the `SearchIndex`, which stops its writer thread and
//! frees every segment. (Freed, not wiped: tantivy's buffers cannot be zeroized, so
//! until the allocator reuses them they are protected only by the process boundary.)
//!
//! **Writes are asynchronous, reads see them.** A commit costs milliseconds of CPU (it
//! seals a segment, reloads the reader, and feeds tantivy's merges), and a capture should
//! never wait for one. So [`upsert`](SearchIndex::upsert) and
//! [`remove`](SearchIndex::remove) only enqueue; one background writer thread applies
//! what is queued (delete by id, then add) at once but commits at most every
//! [`COMMIT_INTERVAL`] — one commit for a whole burst of captures instead of one each —
//! unless a search is waiting: [`search`](SearchIndex::search) first asks for a commit
//! of every write enqueued before it and waits for it (at most
//! [`READ_YOUR_WRITES_WAIT`]), so a capture followed by a search finds the capture.
//! Writer errors are logged — never the text or tags of an item — and never panic.
//!
//! **Memory.** [`SearchIndex::memory_bytes`] reports the size of every file in the RAM
//! directory (tantivy's `RamDirectory::total_mem_usage`, which adds files still being
//! written): the committed segments, including documents deleted but not yet merged
//! away and segments a merge has replaced but not yet garbage-collected. It does not
//! count the writer's indexing arena ([`WRITER_MEMORY_BUDGET`] at most) or the reader's
//! small caches.
//!
//! Error policy: the writing side has no caller to report to, so it logs; reads return
//! [`SearchError`] for the rare failures of tantivy itself. People's query strings
//! never cause an error: they are parsed leniently.

mod fields;
mod snippet;
mod tags;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::ops::Bound;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::RamDirectory;
use tantivy::indexer::IndexWriterOptions;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query as TantivyQuery, QueryParser, RangeQuery,
    TermQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocAddress, Index, IndexReader, IndexSettings, IndexWriter, Order, ReloadPolicy,
    TantivyDocument, Term,
};

use crate::fields::{Fields, TAG_EXACT};
pub use crate::snippet::Snippet;
use crate::tags::TagCounter;

/// How long a search waits for earlier writes to become searchable before it searches
/// anyway (and logs a warning). A batch commits in milliseconds; only a writer stuck
/// on a very large batch could take longer, and a slightly stale answer beats a hung page.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

/// The indexing arena of the writer thread. tantivy's minimum is 15 MB; a little more
/// lets [`SearchIndex::build`] make fewer, larger segments on a vault of 100 000 items.
pub const WRITER_MEMORY_BUDGET: usize = 32_000_000;

/// Results per page, at most.
pub const MAX_LIMIT: usize = 200;

/// The deepest page: collecting `offset + limit` top documents costs memory in
/// proportion, so an absurd offset is clamped rather than honoured.
pub const MAX_OFFSET: usize = 10_000;

/// The longest query text considered; the rest is ignored. Long enough for any phrase
/// a person types, short enough that a pasted page cannot build a huge query.
pub const MAX_QUERY_BYTES: usize = 4_096;

/// The most operations applied before the writer looks at the clock again.
const MAX_BATCH: usize = 1_000;

/// The longest a write waits for its commit when no search asks for it: commits are
/// batched, so that a stream of captures costs a few commits a second, not one each.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(250);

/// How often [`SearchIndex::build`] reports progress.
const PROGRESS_EVERY: usize = 1_000;

/// Tags outrank the text a little: a word that is also a tag is likely what the item is
/// about.
const TAG_BOOST: f32 = 1.5;

/// Why a search (or a bulk build) failed. Never caused by what a person typed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The writer thread is gone (it failed to start or was stopped); nothing can be
    /// written any more.
    #[error("the search index writer has stopped")]
    WriterStopped,
}

/// A string that names no [`Kind`] or [`TaskStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct ParseError {
    what: &'static str,
    value: String,
}

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Note,
    Task,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Note => "note",
            Kind::Task => "task",
        }
    }
}

impl FromStr for Kind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "note" => Ok(Kind::Note),
            "task" => Ok(Kind::Task),
            _ => Err(ParseError {
                what: "kind",
                value: s.to_owned(),
            }),
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Open,
    Doing,
    Done,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::Doing => "doing",
            TaskStatus::Done => "done",
        }
    }
}

impl FromStr for TaskStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "open" => Ok(TaskStatus::Open),
            "doing" => Ok(TaskStatus::Doing),
            "done" => Ok(TaskStatus::Done),
            _ => Err(ParseError {
                what: "task status",
                value: s.to_owned(),
            }),
        }
    }
}

/// One item, decrypted, as the index takes it.
#[derive(Clone)]
pub struct Document {
    pub id: uuid::Uuid,
    /// The item's text (may be Markdown), up to 16 KiB.
    pub text: String,
    /// User tag names, any Unicode, up to 32 per item.
    pub tags: Vec<String>,
    pub kind: Kind,
    /// Some for tasks.
    pub status: Option<TaskStatus>,
    /// Tasks only.
    pub due: Option<time::Date>,
    pub created: time::OffsetDateTime,
    /// Accepted for completeness; the index neither sorts nor filters on it.
    pub updated: time::OffsetDateTime,
    pub pinned: bool,
    pub archived: bool,
}

impl std::fmt::Debug for Document {
    // Text and tags are the person's: never in a log line or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("id", &self.id)
            .field("text_bytes", &self.text.len())
            .field("tags", &self.tags.len())
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("due", &self.due)
            .field("created", &self.created)
            .field("updated", &self.updated)
            .field("pinned", &self.pinned)
            .field("archived", &self.archived)
            .finish()
    }
}

/// The order of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Best match first (BM25); newest first when there is no query text.
    #[default]
    Relevance,
    /// Most recently created first.
    Newest,
    /// Soonest due date first, items without one last; newest first among equals.
    Due,
}

/// A search, as a person asked for it.
#[derive(Clone)]
pub struct Query {
    /// What the person typed; empty means every item matching the filters. Words are
    /// ANDed; "quoted phrases", `OR`, `-word` work; the rest is read leniently.
    pub text: String,
    /// Each must be on the item (exact tag, case-insensitive).
    pub tags: Vec<String>,
    pub kind: Option<Kind>,
    pub status: Option<TaskStatus>,
    /// Inclusive.
    pub created_from: Option<time::OffsetDateTime>,
    /// Exclusive.
    pub created_to: Option<time::OffsetDateTime>,
    /// Archived items are hidden unless true.
    pub include_archived: bool,
    pub sort: Sort,
    /// Clamped to 1..=[`MAX_LIMIT`].
    pub limit: usize,
    /// Clamped to [`MAX_OFFSET`].
    pub offset: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            text: String::new(),
            tags: Vec::new(),
            kind: None,
            status: None,
            created_from: None,
            created_to: None,
            include_archived: false,
            sort: Sort::Relevance,
            limit: 20,
            offset: 0,
        }
    }
}

impl std::fmt::Debug for Query {
    // What someone searches for is as private as what they wrote.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("text_bytes", &self.text.len())
            .field("tags", &self.tags.len())
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("created_from", &self.created_from)
            .field("created_to", &self.created_to)
            .field("include_archived", &self.include_archived)
            .field("sort", &self.sort)
            .field("limit", &self.limit)
            .field("offset", &self.offset)
            .finish()
    }
}

/// One result.
#[derive(Clone)]
pub struct Hit {
    pub id: uuid::Uuid,
    /// The BM25 score for [`Sort::Relevance`] with query text; 0 otherwise.
    pub score: f32,
    pub snippet: Snippet,
    pub kind: Kind,
    /// As written.
    pub tags: Vec<String>,
    pub status: Option<TaskStatus>,
    pub due: Option<time::Date>,
    /// In UTC (the index keeps the instant, not the original offset).
    pub created: time::OffsetDateTime,
    pub pinned: bool,
    pub archived: bool,
}

impl std::fmt::Debug for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hit")
            .field("id", &self.id)
            .field("score", &self.score)
            .field("snippet", &self.snippet)
            .field("kind", &self.kind)
            .field("tags", &self.tags.len())
            .field("status", &self.status)
            .field("due", &self.due)
            .field("created", &self.created)
            .field("pinned", &self.pinned)
            .field("archived", &self.archived)
            .finish()
    }
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Results {
    pub hits: Vec<Hit>,
    /// How many items match in all (not just this page).
    pub total: usize,
}

/// One write, in the order it was asked for.
enum Op {
    Upsert(Box<Document>),
    Remove(uuid::Uuid),
    /// Commit now: a search is waiting for the writes before this one.
    Flush,
}

struct Write {
    seq: u64,
    op: Op,
}

/// How far the writer thread got.
#[derive(Debug)]
struct Published {
    /// Every write with a sequence number up to this one is searchable (or failed and
    /// was logged).
    applied: u64,
    /// False once the writer thread has ended: nobody will advance `applied` again.
    running: bool,
}

/// What the handle and the writer thread share.
struct Shared {
    directory: RamDirectory,
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
    tag_normalizer: TextAnalyzer,
    /// The writer; `None` once the writer thread has shut it down. Whoever holds the
    /// lock sees a committed, reloaded index: the thread commits and reloads before it
    /// lets go.
    writer: Mutex<Option<IndexWriter>>,
    /// The sequence number of the last write enqueued.
    enqueued: AtomicU64,
    published: Mutex<Published>,
    published_changed: Condvar,
}

/// The search index of one unlocked vault. See the [crate documentation](crate).
pub struct SearchIndex {
    shared: Arc<Shared>,
    /// Behind a mutex so that a sequence number is taken and its write sent in one step:
    /// the channel's order is the sequence order, which is what makes `applied` mean
    /// "everything up to here". `None` once dropping.
    sender: Mutex<Option<Sender<Write>>>,
    thread: Option<JoinHandle<()>>,
    /// Documents added, replaced or removed so far ([`SearchIndex::writes`]).
    changes: AtomicU64,
}

impl std::fmt::Debug for SearchIndex {
    // Counts only: never a document's text, a tag or a query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let published = lock(&self.shared.published);
        f.debug_struct("SearchIndex")
            .field("docs", &self.shared.reader.searcher().num_docs())
            .field("enqueued", &self.shared.enqueued.load(Ordering::Acquire))
            .field("applied", &published.applied)
            .field("writer_running", &published.running)
            .finish()
    }
}

impl SearchIndex {
    /// An empty index in RAM, with its writer thread started.
    pub fn new() -> Result<SearchIndex, SearchError> {
        let (schema, fields) = Fields::schema();
        let directory = RamDirectory::create();
        let index = Index::create(directory.clone(), schema, IndexSettings::default())?;
        index
            .tokenizers()
            .register(TAG_EXACT, fields::tag_exact_analyzer());
        let writer = index.writer_with_options(
            IndexWriterOptions::builder()
                .memory_budget_per_thread(WRITER_MEMORY_BUDGET)
                .num_worker_threads(1)
                // The appliance is a small machine that serves pages too.
                .num_merge_threads(1)
                .build(),
        )?;
        let reader = index
            .reader_builder()
            // We reload ourselves right after each commit, so a published sequence
            // number means searchable, not "soon".
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(&index, vec![fields.text, fields.tags]);
        parser.set_conjunction_by_default();
        parser.set_field_boost(fields.tags, TAG_BOOST);
        let shared = Arc::new(Shared {
            directory,
            reader,
            fields,
            parser,
            tag_normalizer: fields::tag_exact_analyzer(),
            writer: Mutex::new(Some(writer)),
            enqueued: AtomicU64::new(0),
            published: Mutex::new(Published {
                applied: 0,
                running: true,
            }),
            published_changed: Condvar::new(),
        });
        let (sender, receiver) = mpsc::channel();
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("cv-search-writer".to_owned())
                .spawn(move || run_writer(&shared, &receiver))
                .map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?
        };
        Ok(SearchIndex {
            shared,
            sender: Mutex::new(Some(sender)),
            thread: Some(thread),
            changes: AtomicU64::new(0),
        })
    }

    /// Adds the document, replacing any with the same id. Returns at once; the next
    /// [`search`](Self::search) sees it.
    pub fn upsert(&self, doc: Document) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.enqueue(Op::Upsert(Box::new(doc)));
    }

    /// Removes the document with this id, if any. Returns at once.
    pub fn remove(&self, id: uuid::Uuid) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.enqueue(Op::Remove(id));
    }

    fn enqueue(&self, op: Op) {
        let sender = lock(&self.sender);
        let Some(sender) = sender.as_ref() else {
            return;
        };
        let seq = self.shared.enqueued.load(Ordering::Acquire) + 1;
        if sender.send(Write { seq, op }).is_ok() {
            self.shared.enqueued.store(seq, Ordering::Release);
        } else {
            tracing::error!("search index writer has stopped; a write was dropped");
        }
    }

    /// Loads many documents at once (at unlock): one commit at the end, so it is much
    /// faster than as many upserts. `progress` is called with the number of documents
    /// indexed so far, every 1 000 documents and once at the end. Blocks until they
    /// are searchable. A document whose id is already indexed replaces it. On error
    /// nothing of this build is kept. Writes enqueued meanwhile are applied after it
    /// (searches meanwhile wait for them at most [`READ_YOUR_WRITES_WAIT`]).
    pub fn build(
        &self,
        docs: impl IntoIterator<Item = Document>,
        mut progress: impl FnMut(usize),
    ) -> Result<(), SearchError> {
        let shared = &self.shared;
        let mut guard = lock(&shared.writer);
        let writer = guard.as_mut().ok_or(SearchError::WriterStopped)?;
        // Holding the writer lock, the reader shows everything committed. On an empty
        // index (the usual case at unlock) there is nothing to replace, and skipping a
        // delete per document keeps the commit cheap.
        let was_empty = shared.reader.searcher().num_docs() == 0;
        let mut seen = HashSet::new();
        let mut count = 0;
        let mut reported = None;
        let added: Result<(), tantivy::TantivyError> = (|| {
            for doc in docs {
                if !was_empty || !seen.insert(doc.id) {
                    writer.delete_term(shared.fields.id_term(doc.id));
                }
                writer.add_document(shared.fields.tantivy_doc(&doc))?;
                count += 1;
                if count % PROGRESS_EVERY == 0 {
                    progress(count);
                    reported = Some(count);
                }
            }
            writer.commit()?;
            Ok(())
        })();
        if let Err(e) = added {
            tracing::error!(error = %e, "search index build failed; rolling back");
            if let Err(e) = writer.rollback() {
                tracing::error!(error = %e, "search index rollback failed");
            }
            return Err(e.into());
        }
        shared.reader.reload()?;
        drop(guard);
        if reported != Some(count) {
            progress(count);
        }
        tracing::info!(docs = count, "search index built");
        Ok(())
    }

    /// Searches. Waits first (at most [`READ_YOUR_WRITES_WAIT`]) for every write
    /// enqueued before the call.
    pub fn search(&self, q: &Query) -> Result<Results, SearchError> {
        self.wait_for_writes(Some(READ_YOUR_WRITES_WAIT));
        let shared = &self.shared;
        let fields = &shared.fields;
        let searcher = shared.reader.searcher();

        let text = truncate(q.text.trim(), MAX_QUERY_BYTES);
        let text_query = (!text.is_empty()).then(|| parse_text(&shared.parser, text));
        let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
        if let Some(text_query) = &text_query {
            clauses.push((Occur::Must, text_query.box_clone()));
        }
        clauses.extend(self.filter_clauses(q));
        let query: Box<dyn TantivyQuery> = if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        };

        let limit = q.limit.clamp(1, MAX_LIMIT);
        let offset = q.offset.min(MAX_OFFSET);
        let top = TopDocs::with_limit(limit).and_offset(offset);
        let sort = match (q.sort, &text_query) {
            (Sort::Relevance, None) => Sort::Newest,
            (sort, _) => sort,
        };
        let (total, page): (usize, Vec<(f32, DocAddress)>) = match sort {
            Sort::Relevance => searcher.search(&query, &(Count, top.order_by_score()))?,
            Sort::Newest => {
                let (total, page) = searcher.search(
                    &query,
                    &(
                        Count,
                        top.order_by_fast_field::<i64>(Fields::CREATED, Order::Desc),
                    ),
                )?;
                (total, page.into_iter().map(|(_, a)| (0.0, a)).collect())
            }
            Sort::Due => {
                let by_due = (
                    (
                        SortByStaticFastValue::<i64>::for_field(Fields::DUE),
                        Order::Asc,
                    ),
                    (
                        SortByStaticFastValue::<i64>::for_field(Fields::CREATED),
                        Order::Desc,
                    ),
                );
                let (total, page) = searcher.search(&query, &(Count, top.order_by(by_due)))?;
                (total, page.into_iter().map(|(_, a)| (0.0, a)).collect())
            }
        };

        let generator = match &text_query {
            Some(text_query) => {
                let mut generator =
                    SnippetGenerator::create(&searcher, &**text_query, fields.text)?;
                generator.set_max_num_chars(snippet::SNIPPET_CHARS);
                Some(generator)
            }
            None => None,
        };
        let mut hits = Vec::with_capacity(page.len());
        for (score, address) in page {
            let doc: TantivyDocument = searcher.doc(address)?;
            let stored = fields.stored(&doc);
            let snippet = match &generator {
                Some(generator) => snippet::highlighted(generator, &stored.text),
                None => snippet::lead(&stored.text),
            };
            hits.push(Hit {
                id: stored.id,
                score,
                snippet,
                kind: stored.kind,
                tags: stored.tags,
                status: stored.status,
                due: stored.due,
                created: stored.created,
                pinned: stored.pinned,
                archived: stored.archived,
            });
        }
        Ok(Results { hits, total })
    }

    /// The query's filters (tags, kind, status, created range, archived) as clauses
    /// that select without ranking: a constant score of zero keeps BM25 the text's alone.
    fn filter_clauses(&self, q: &Query) -> Vec<(Occur, Box<dyn TantivyQuery>)> {
        let shared = &self.shared;
        let fields = &shared.fields;
        let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
        let mut filter = |query: Box<dyn TantivyQuery>| {
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(query, 0.0))));
        };
        let mut normalizer = shared.tag_normalizer.clone();
        for tag in &q.tags {
            let tag = tags::normalize(&mut normalizer, tag);
            if !tag.is_empty() {
                filter(term_query(Term::from_field_text(fields.tag_exact, &tag)));
            }
        }
        if let Some(kind) = q.kind {
            filter(term_query(Term::from_field_text(
                fields.kind,
                kind.as_str(),
            )));
        }
        if let Some(status) = q.status {
            filter(term_query(Term::from_field_text(
                fields.status,
                status.as_str(),
            )));
        }
        if q.created_from.is_some() || q.created_to.is_some() {
            let bound = |t: Option<time::OffsetDateTime>, make: fn(Term) -> Bound<Term>| {
                t.map_or(Bound::Unbounded, |t| {
                    make(Term::from_field_i64(fields.created, fields::micros(t)))
                })
            };
            // A fast field: tantivy scans the column rather than the term dictionary.
            filter(Box::new(RangeQuery::new(
                bound(q.created_from, Bound::Included),
                bound(q.created_to, Bound::Excluded),
            )));
        }
        if !q.include_archived {
            filter(term_query(Term::from_field_bool(fields.archived, false)));
        }
        clauses
    }

    /// The documents among `items` that pass `q`'s filters (its text is ignored), in
    /// the order given, each with the lead of its text as snippet, or of the part of it
    /// in the given byte range (a chunk that matched in meaning) when that range is
    /// valid. For results that came from elsewhere (vector search) and need the same
    /// filters and the same fields as [`search`](Self::search)'s. Sees earlier writes.
    pub fn lookup(
        &self,
        q: &Query,
        items: &[(uuid::Uuid, Option<std::ops::Range<usize>>)],
    ) -> Result<Vec<Hit>, SearchError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.wait_for_writes(Some(READ_YOUR_WRITES_WAIT));
        let shared = &self.shared;
        let fields = &shared.fields;
        let searcher = shared.reader.searcher();
        let ids: Vec<(Occur, Box<dyn TantivyQuery>)> = items
            .iter()
            .map(|(id, _)| (Occur::Should, term_query(fields.id_term(*id))))
            .collect();
        let mut clauses = self.filter_clauses(q);
        clauses.push((Occur::Must, Box::new(BooleanQuery::new(ids))));
        let query = BooleanQuery::new(clauses);
        let found = searcher.search(&query, &tantivy::collector::DocSetCollector)?;
        let mut by_id = std::collections::HashMap::with_capacity(found.len());
        for address in found {
            let doc: TantivyDocument = searcher.doc(address)?;
            let stored = fields.stored(&doc);
            by_id.insert(stored.id, stored);
        }
        let mut hits = Vec::with_capacity(by_id.len());
        for (id, range) in items {
            let Some(stored) = by_id.remove(id) else {
                continue;
            };
            let part = range
                .as_ref()
                .and_then(|r| stored.text.get(r.clone()))
                .filter(|part| !part.trim().is_empty())
                .unwrap_or(&stored.text);
            hits.push(Hit {
                id: stored.id,
                score: 0.0,
                snippet: snippet::lead(part),
                kind: stored.kind,
                tags: stored.tags,
                status: stored.status,
                due: stored.due,
                created: stored.created,
                pinned: stored.pinned,
                archived: stored.archived,
            });
        }
        Ok(hits)
    }

    /// Every tag with the number of non-archived items carrying it, ordered by name
    /// case-insensitively, with the spelling most items use. Sees earlier writes, like
    /// [`search`](Self::search). Empty (and logged) if tantivy fails.
    pub fn tags(&self) -> Vec<(String, u64)> {
        self.wait_for_writes(Some(READ_YOUR_WRITES_WAIT));
        let shared = &self.shared;
        let counter = TagCounter {
            normalizer: shared.tag_normalizer.clone(),
        };
        let not_archived = term_query(Term::from_field_bool(shared.fields.archived, false));
        match shared.reader.searcher().search(&*not_archived, &counter) {
            Ok(tallies) => TagCounter::into_list(tallies),
            Err(e) => {
                tracing::error!(error = %e, "counting tags failed");
                Vec::new()
            }
        }
    }

    /// How many documents were ever added, replaced or removed: it changes whenever
    /// anything written changes, so a result derived from the index (insights) can tell
    /// it is out of date. A search sees every write counted here.
    pub fn writes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The number of searchable documents (writes still queued are not counted).
    pub fn len(&self) -> u64 {
        self.shared.reader.searcher().num_docs()
    }

    /// True when no document is searchable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the RAM directory's files: the index's segments, see the
    /// [crate documentation](crate) for what is and is not counted.
    pub fn memory_bytes(&self) -> u64 {
        self.shared.directory.total_mem_usage() as u64
    }

    /// Waits until every write enqueued so far is searchable (or the writer has stopped).
    pub fn flush(&self) {
        self.wait_for_writes(None);
    }

    /// Waits until the writer has published every write enqueued before the call, or the
    /// timeout passed (then it logs a warning), or the writer stopped.
    fn wait_for_writes(&self, timeout: Option<Duration>) {
        let mut target = self.shared.enqueued.load(Ordering::Acquire);
        if lock(&self.shared.published).applied >= target {
            return;
        }
        // Writes are waiting for their batched commit: ask for it now.
        self.enqueue(Op::Flush);
        target = target.max(self.shared.enqueued.load(Ordering::Acquire));
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut published = lock(&self.shared.published);
        while published.applied < target && published.running {
            match deadline {
                None => {
                    published = self
                        .shared
                        .published_changed
                        .wait(published)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        tracing::warn!(
                            pending = target - published.applied,
                            "search index writes not yet searchable; searching anyway"
                        );
                        return;
                    }
                    published = self
                        .shared
                        .published_changed
                        .wait_timeout(published, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

impl Drop for SearchIndex {
    /// Stops the writer thread: it applies what is still queued, waits for tantivy's
    /// merges, and ends. Then every segment is freed with the last `Arc`.
    fn drop(&mut self) {
        // Closing the channel is the stop signal.
        drop(lock(&self.sender).take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("search index writer thread panicked");
        }
    }
}

/// The writer thread: batches, applies, commits, reloads, publishes; until the channel
/// closes.
fn run_writer(shared: &Shared, receiver: &Receiver<Write>) {
    // Whatever ends this thread, even a panic inside tantivy, searches must stop waiting.
    struct Stopped<'a>(&'a Shared);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            lock(&self.0.published).running = false;
            self.0.published_changed.notify_all();
        }
    }
    let _stopped = Stopped(shared);
    let mut closed = false;
    // Applied to the writer but not committed: the highest sequence number, and when the
    // first of them arrived.
    let mut pending: Option<(u64, Instant)> = None;
    while !closed {
        let next = match pending {
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some((_, since)) => {
                receiver.recv_timeout(COMMIT_INTERVAL.saturating_sub(since.elapsed()))
            }
        };
        let mut flush = false;
        match next {
            Ok(first) => {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(write) => batch.push(write),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                flush = batch.iter().any(|w| matches!(w.op, Op::Flush));
                let last = batch.last().map_or(0, |w| w.seq);
                add(shared, batch);
                pending = Some((last, pending.map_or_else(Instant::now, |(_, t)| t)));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        let due = pending.is_some_and(|(_, since)| since.elapsed() >= COMMIT_INTERVAL);
        if let Some((last, _)) = pending
            && (flush || due || closed)
        {
            commit(shared);
            pending = None;
            let mut published = lock(&shared.published);
            published.applied = published.applied.max(last);
            drop(published);
            shared.published_changed.notify_all();
        }
    }
    if let Some(writer) = lock(&shared.writer).take()
        && let Err(e) = writer.wait_merging_threads()
    {
        tracing::warn!(error = %e, "search index writer did not shut down cleanly");
    }
}

/// Applies one batch to the writer (not yet committed). A document that cannot be added
/// is logged by id and left out; the rest of the batch stands.
fn add(shared: &Shared, batch: Vec<Write>) {
    let mut guard = lock(&shared.writer);
    let Some(writer) = guard.as_mut() else {
        return;
    };
    for write in batch {
        match write.op {
            Op::Upsert(doc) => {
                writer.delete_term(shared.fields.id_term(doc.id));
                if let Err(e) = writer.add_document(shared.fields.tantivy_doc(&doc)) {
                    tracing::error!(id = %doc.id, error = %e, "search index: adding a document failed");
                }
            }
            Op::Remove(id) => {
                writer.delete_term(shared.fields.id_term(id));
            }
            Op::Flush => {}
        }
    }
}

/// Commits what was applied and reloads the reader. A failed commit is logged and rolled
/// back; the caller publishes either way, so searches never wait on it.
fn commit(shared: &Shared) {
    let mut guard = lock(&shared.writer);
    let Some(writer) = guard.as_mut() else {
        return;
    };
    if let Err(e) = writer.commit() {
        tracing::error!(error = %e, "search index commit failed");
        if let Err(e) = writer.rollback() {
            tracing::error!(error = %e, "search index rollback failed");
        }
        return;
    }
    if let Err(e) = shared.reader.reload() {
        tracing::error!(error = %e, "search index reader reload failed");
    }
}

/// Reads what a person typed. Never fails: the lenient parser drops what it cannot read.
///
/// Colons are read as spaces: field syntax (`archived:true`, `id:…`) is not offered to
/// people — filters are [`Query`] fields — and a colon in text ("re: lunch", a URL, a
/// time) then searches its words, as the text was indexed.
fn parse_text(parser: &QueryParser, text: &str) -> Box<dyn TantivyQuery> {
    let text = text.replace(':', " ");
    let (query, _ignored) = parser.parse_query_lenient(&text);
    query
}

fn term_query(term: Term) -> Box<dyn TantivyQuery> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// The longest prefix of at most `max` bytes that ends on a char boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Locks, ignoring poisoning: every critical section here leaves its data consistent
/// (a counter, an `Option`), and a panic elsewhere must not take search down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
