//! Task suggestions: which sentences of a captured text ask for something to be done.
//!
//! The rules, in the order they are tried, and the confidence model are described in the
//! crate documentation. Every word list below is a rule's whole vocabulary: a word that
//! is not listed is not recognised.

use std::fmt;
use std::ops::Range;

use jiff::Zoned;
use jiff::civil::Date;

use crate::due::{self, DueMatch};
use crate::text::{self, Segment, Word};

/// A sentence of the text that looks like something to do.
#[derive(Clone, PartialEq)]
pub struct TaskSuggestion {
    /// The sentence as a task title: the cue ("I need to", "remember to", "todo:") and a
    /// trailing due-date phrase removed, whitespace collapsed, the first letter in upper
    /// case.
    pub title: String,
    /// The day the sentence names, if any.
    pub due: Option<Date>,
    /// 0 to 1: the rule's base confidence plus the adjustments in the evidence.
    pub confidence: f32,
    /// The rule that recognised the sentence.
    pub rule: TaskRule,
    /// Why: where the sentence is, and which words made the rule fire.
    pub evidence: TaskEvidence,
}

/// The rules that recognise a task, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskRule {
    /// An open checkbox: `[ ] buy milk`, `- [ ] …`, `☐ …`.
    Checkbox,
    /// A to-do marker: `todo:`, `TODO`, `to do:`, `task:`, `action item:`.
    TodoMarker,
    /// "remember to", "don't forget (to)", "remind me to", "make sure to", `reminder:`.
    Reminder,
    /// "I need to", "I have to", "I must", "I've got to", "need to …" and the like.
    Obligation,
    /// A sentence that starts with a verb from the task-verb list: "call the dentist".
    Imperative,
    /// "I should", "we ought to", followed by a task verb.
    Advice,
    /// "I'll", "I will", "I'm going to", followed by a task verb.
    Intention,
    /// A deadline and nothing else: "tax return due April 15", "slides by Friday".
    Deadline,
}

impl TaskRule {
    /// The confidence the rule starts from, before the adjustments.
    pub fn base_confidence(self) -> f32 {
        match self {
            TaskRule::Checkbox | TaskRule::TodoMarker => 0.9,
            TaskRule::Reminder => 0.85,
            TaskRule::Obligation => 0.8,
            TaskRule::Imperative => 0.65,
            TaskRule::Advice => 0.55,
            TaskRule::Intention | TaskRule::Deadline => 0.5,
        }
    }

    /// A stable lowercase name, for an API or a template.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRule::Checkbox => "checkbox",
            TaskRule::TodoMarker => "todo_marker",
            TaskRule::Reminder => "reminder",
            TaskRule::Obligation => "obligation",
            TaskRule::Imperative => "imperative",
            TaskRule::Advice => "advice",
            TaskRule::Intention => "intention",
            TaskRule::Deadline => "deadline",
        }
    }
}

/// Why a sentence was suggested, as byte ranges into the text given to
/// [`suggest_tasks`] (always on `char` boundaries), so that a page can highlight them.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvidence {
    /// The whole source sentence (after any list marker or checkbox).
    pub sentence: Range<usize>,
    /// The words that made the rule fire: the checkbox, the marker, "I need to", the verb
    /// of an imperative, "by"…
    pub cues: Vec<Cue>,
    /// The date phrase the due date was read from, its preposition included.
    pub due_phrase: Option<Range<usize>>,
    /// Each change made to the rule's base confidence, in the order applied.
    pub adjustments: Vec<Adjustment>,
}

/// Cue words in the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Cue {
    /// Their bytes in the text.
    pub range: Range<usize>,
    /// The words as written (whitespace collapsed).
    pub words: String,
}

/// A change to a suggestion's confidence, and its reason.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adjustment {
    pub reason: AdjustmentReason,
    /// Added to the confidence (negative lowers it).
    pub delta: f32,
}

/// The reasons a task's confidence moves away from its rule's base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdjustmentReason {
    /// The sentence names a due date: +0.1.
    DueDate,
    /// The sentence is a list item (without a checkbox): +0.05.
    ListItem,
    /// The sentence hedges ("maybe", "perhaps", "probably", "someday"…): −0.15.
    Hedged,
    /// The sentence has more than [`LONG_SENTENCE_WORDS`] words: −0.1.
    Long,
}

impl AdjustmentReason {
    /// The change this reason makes to a confidence.
    pub fn delta(self) -> f32 {
        match self {
            AdjustmentReason::DueDate => 0.1,
            AdjustmentReason::ListItem => 0.05,
            AdjustmentReason::Hedged => -0.15,
            AdjustmentReason::Long => -0.1,
        }
    }
}

/// A sentence longer than this (in words) is more likely a description than a task.
pub const LONG_SENTENCE_WORDS: usize = 25;

/// No rule is certain: a confidence never exceeds this.
pub const MAX_TASK_CONFIDENCE: f32 = 0.95;

// Titles and cue words are a person's text: `Debug` shows their length only, so that a
// suggestion can be logged by mistake without leaking anything.
impl fmt::Debug for TaskSuggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSuggestion")
            .field("title", &format_args!("<{} bytes>", self.title.len()))
            .field("due", &self.due)
            .field("confidence", &self.confidence)
            .field("rule", &self.rule)
            .field("evidence", &self.evidence)
            .finish()
    }
}

impl fmt::Debug for Cue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cue")
            .field("range", &self.range)
            .field("words", &format_args!("<{} bytes>", self.words.len()))
            .finish()
    }
}

/// The task suggestions in `text`, in the order of their sentences, with due dates read
/// relative to `captured_at` in its time zone (the caller gives the appliance's zone).
///
/// ```
/// use jiff::civil::date;
/// let at = date(2026, 3, 4).at(18, 0, 0, 0).in_tz("UTC").unwrap(); // a Wednesday
/// let found = cv_suggest::suggest_tasks("The meeting was long. I need to send Anna the \
///                                        invoice by Friday.", at);
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].title, "Send Anna the invoice");
/// assert_eq!(found[0].due, Some(date(2026, 3, 6)));
/// ```
pub fn suggest_tasks(text: &str, captured_at: Zoned) -> Vec<TaskSuggestion> {
    text::segments(text)
        .iter()
        .filter_map(|segment| analyse(text, segment, &captured_at))
        .collect()
}

/// Leading words that change nothing: "please call", "also buy", "oh and send".
const FILLERS: &[&str] = &[
    "please",
    "pls",
    "plz",
    "also",
    "then",
    "and",
    "oh",
    "ok",
    "okay",
    "so",
    "just",
    "btw",
    "ps",
    "quick",
    "quickly",
    "urgent",
    "important",
    "asap",
    "maybe",
    "perhaps",
];

/// Words allowed between a subject and its modal, or a modal and its verb: "I really need
/// to", "I should probably call".
const ADVERBS: &[&str] = &[
    "really",
    "definitely",
    "probably",
    "also",
    "just",
    "still",
    "actually",
    "seriously",
    "finally",
    "absolutely",
    "totally",
    "urgently",
    "quickly",
    "first",
    "maybe",
    "perhaps",
    "soon",
    "then",
    "honestly",
    "eventually",
    "somehow",
    "asap",
];

/// Verbs whose imperative starts a task. A sentence that starts with one (after fillers
/// and a leading date) is an [`TaskRule::Imperative`]; "I should"/"I'll" must be followed
/// by one to count. Kept sorted (a test checks), for a binary search.
const TASK_VERBS: &[&str] = &[
    "add",
    "apply",
    "arrange",
    "ask",
    "back",
    "bake",
    "book",
    "borrow",
    "bring",
    "buy",
    "call",
    "cancel",
    "change",
    "charge",
    "check",
    "choose",
    "clean",
    "clear",
    "collect",
    "confirm",
    "contact",
    "cook",
    "copy",
    "create",
    "decide",
    "delete",
    "deliver",
    "deploy",
    "discuss",
    "do",
    "download",
    "draft",
    "drop",
    "e-mail",
    "email",
    "empty",
    "feed",
    "file",
    "fill",
    "finalise",
    "finalize",
    "find",
    "finish",
    "fix",
    "follow",
    "get",
    "give",
    "go",
    "hand",
    "install",
    "invite",
    "look",
    "mail",
    "make",
    "meet",
    "merge",
    "message",
    "move",
    "mow",
    "notify",
    "order",
    "organise",
    "organize",
    "pack",
    "pay",
    "phone",
    "pick",
    "ping",
    "plan",
    "post",
    "practice",
    "practise",
    "prepare",
    "print",
    "publish",
    "put",
    "read",
    "refill",
    "register",
    "remind",
    "remove",
    "renew",
    "repair",
    "replace",
    "reply",
    "report",
    "reschedule",
    "research",
    "reserve",
    "respond",
    "return",
    "review",
    "ring",
    "schedule",
    "send",
    "set",
    "share",
    "ship",
    "sign",
    "sort",
    "start",
    "study",
    "submit",
    "swap",
    "take",
    "talk",
    "tell",
    "test",
    "text",
    "thank",
    "tidy",
    "transfer",
    "try",
    "unsubscribe",
    "update",
    "upgrade",
    "upload",
    "vacuum",
    "visit",
    "vote",
    "walk",
    "wash",
    "water",
    "write",
];

/// Words that, right after a sentence's first word, show that word to be a noun ("Call
/// was long", "Book of the month"), not a verb.
const NOUN_FOLLOWERS: &[&str] = &[
    "was", "were", "is", "are", "'s", "has", "had", "went", "seems", "seemed", "looks", "looked",
    "felt", "feels", "took", "will", "would", "can", "could", "should", "might", "must", "may",
    "of", "from", "did", "does",
];

/// Set phrases that look like imperatives but wish, greet or exclaim: "Take care!".
const SET_PHRASES: &[&[&str]] = &[
    &["get", "well"],
    &["take", "care"],
    &["go", "team"],
    &["look", "at", "this"],
    &["look", "at", "that"],
    &["call", "me", "maybe"],
    &["move", "fast"],
    &["have", "fun"],
];

/// Words that make the word after a sentence's first word the start of an object ("Send
/// the signed contract"), not a noun phrase with a verb of its own ("Plan B failed").
const DETERMINERS: &[&str] = &[
    "the", "a", "an", "my", "your", "his", "her", "our", "their", "its", "this", "that", "these",
    "those", "some", "me", "him", "us", "them",
];

/// Irregular past tenses ("Test results came back"); regular ones end in "-ed".
const IRREGULAR_PAST: &[&str] = &[
    "came", "went", "ran", "took", "got", "made", "said", "fell", "broke", "left", "won", "lost",
    "began", "grew", "gave", "saw", "knew", "told", "sent", "stood",
];

/// Verbs of a clause that describe rather than ask: "Book club was fun", "Walk in the
/// park was lovely".
const PAST_COPULAS: &[&str] = &["was", "were"];

/// Words that date a sentence in the past.
const PAST_MARKERS: &[&str] = &["yesterday", "ago", "already", "earlier"];

/// Verbs whose past tense is spelt like their base form ("Read the book yesterday").
const SAME_FORM_PAST: &[&str] = &[
    "read", "put", "set", "cut", "let", "hit", "quit", "shut", "spread", "cost", "hurt", "split",
    "bet", "fit",
];

/// Words that hedge a sentence.
const HEDGES: &[&str] = &[
    "maybe",
    "perhaps",
    "possibly",
    "probably",
    "might",
    "someday",
    "eventually",
];

/// Verbs after "I have to" / "I must" that make a figure of speech, not a task: "I have
/// to admit", "I must say".
const SPEECH_VERBS: &[&str] = &["say", "admit", "agree", "confess", "wonder", "laugh"];

/// Irregular past participles ("I should have gone"); regular ones end in "-ed".
const IRREGULAR_PARTICIPLES: &[&str] = &[
    "been",
    "done",
    "gone",
    "seen",
    "known",
    "taken",
    "given",
    "written",
    "eaten",
    "forgotten",
    "gotten",
    "got",
    "had",
    "made",
    "said",
    "told",
    "sent",
    "bought",
    "brought",
    "thought",
    "paid",
    "left",
    "kept",
    "met",
    "found",
    "heard",
    "felt",
    "lost",
    "won",
    "spent",
    "sold",
    "come",
    "become",
    "run",
    "put",
    "read",
    "let",
    "set",
    "missed",
];

/// Words that open a sentence about someone or something else ("It's due Friday"), or
/// one addressed to someone else ("Let me know by Friday"): a deadline alone is no task
/// for these.
const PRONOUNS: &[&str] = &[
    "i", "i'm", "i'll", "i've", "i'd", "we", "we're", "we'll", "we've", "he", "she", "they", "it",
    "you", "he's", "she's", "it's", "they're", "you're", "there", "this", "that", "let", "thanks",
    "thank",
];

/// Finite verbs that make a sentence with "by Friday" a statement, not a deadline: "Anna
/// will be back by Friday".
const STATEMENT_VERBS: &[&str] = &[
    "was", "were", "will", "would", "be", "been", "am", "had", "did", "has", "have", "got", "went",
    "won't", "can", "could",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CueKind {
    Reminder,
    Obligation,
    Advice,
    Intention,
}

impl CueKind {
    fn rule(self) -> TaskRule {
        match self {
            CueKind::Reminder => TaskRule::Reminder,
            CueKind::Obligation => TaskRule::Obligation,
            CueKind::Advice => TaskRule::Advice,
            CueKind::Intention => TaskRule::Intention,
        }
    }
}

/// Who may stand before a modal: "I need to", "we must".
const SUBJECTS: &[&str] = &["i", "we"];

/// Cue phrases, with whether they take a subject from [`SUBJECTS`] before them: none
/// (reminders, and contractions that carry their own: "I'll"), optional ("Need to call
/// Bob", "Must fix the tap" may open a sentence alone) or required ("I got to", "we
/// will"). Longer phrases come before their beginnings.
const CUE_PHRASES: &[(&[&str], CueKind, Subject)] = &[
    (&["remember", "to"], CueKind::Reminder, Subject::None),
    (&["don't", "forget", "to"], CueKind::Reminder, Subject::None),
    (&["don't", "forget"], CueKind::Reminder, Subject::None),
    (&["dont", "forget", "to"], CueKind::Reminder, Subject::None),
    (&["dont", "forget"], CueKind::Reminder, Subject::None),
    (
        &["do", "not", "forget", "to"],
        CueKind::Reminder,
        Subject::None,
    ),
    (&["do", "not", "forget"], CueKind::Reminder, Subject::None),
    (&["remind", "me", "to"], CueKind::Reminder, Subject::None),
    (&["reminder", "to"], CueKind::Reminder, Subject::None),
    (&["make", "sure", "to"], CueKind::Reminder, Subject::None),
    (&["be", "sure", "to"], CueKind::Reminder, Subject::None),
    (&["i've", "got", "to"], CueKind::Obligation, Subject::None),
    (&["we've", "got", "to"], CueKind::Obligation, Subject::None),
    (&["i'd", "better"], CueKind::Obligation, Subject::None),
    (&["we'd", "better"], CueKind::Obligation, Subject::None),
    (&["i'll", "have", "to"], CueKind::Obligation, Subject::None),
    (&["we'll", "have", "to"], CueKind::Obligation, Subject::None),
    (&["i'll", "need", "to"], CueKind::Obligation, Subject::None),
    (&["we'll", "need", "to"], CueKind::Obligation, Subject::None),
    (&["i'm", "going", "to"], CueKind::Intention, Subject::None),
    (&["we're", "going", "to"], CueKind::Intention, Subject::None),
    (&["i'm", "gonna"], CueKind::Intention, Subject::None),
    (&["we're", "gonna"], CueKind::Intention, Subject::None),
    (&["i'll"], CueKind::Intention, Subject::None),
    (&["we'll"], CueKind::Intention, Subject::None),
    (&["need", "to"], CueKind::Obligation, Subject::Optional),
    (
        &["have", "got", "to"],
        CueKind::Obligation,
        Subject::Required,
    ),
    (&["have", "to"], CueKind::Obligation, Subject::Optional),
    (&["must"], CueKind::Obligation, Subject::Optional),
    (&["got", "to"], CueKind::Obligation, Subject::Required),
    (&["gotta"], CueKind::Obligation, Subject::Optional),
    (&["had", "better"], CueKind::Obligation, Subject::Required),
    (&["should"], CueKind::Advice, Subject::Optional),
    (&["ought", "to"], CueKind::Advice, Subject::Required),
    (&["will"], CueKind::Intention, Subject::Required),
    (
        &["am", "going", "to"],
        CueKind::Intention,
        Subject::Required,
    ),
    (
        &["are", "going", "to"],
        CueKind::Intention,
        Subject::Required,
    ),
    (&["gonna"], CueKind::Intention, Subject::Required),
];

/// Whether a cue phrase takes a subject from [`SUBJECTS`] before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// It has none (a reminder) or carries its own ("I'll").
    None,
    /// It may have one or stand alone.
    Optional,
    /// It must have one.
    Required,
}

/// A cue phrase found in a sentence.
struct CueMatch {
    kind: CueKind,
    /// Word indices of the phrase, subject included.
    words: Range<usize>,
    /// Index of the word the task's title starts with (after any adverbs).
    verb: usize,
}

/// The words of one sentence, with what has been found in them.
struct Sentence<'a> {
    text: &'a str,
    segment: &'a Segment,
    words: Vec<Word>,
    dates: Vec<DueMatch>,
}

impl Sentence<'_> {
    fn at(&self, i: usize) -> &str {
        self.words.get(i).map_or("", |w| w.lower.as_str())
    }

    fn starts_with(&self, i: usize, phrase: &[&str]) -> bool {
        phrase.iter().enumerate().all(|(k, p)| self.at(i + k) == *p)
    }

    fn any(&self, list: &[&str]) -> bool {
        self.words.iter().any(|w| list.contains(&w.lower.as_str()))
    }

    /// The text between word `i - 1` and word `i`.
    fn gap_before(&self, i: usize) -> &str {
        let end = self
            .words
            .get(i)
            .map_or(self.segment.range.end, |w| w.start);
        let start = match i.checked_sub(1) {
            Some(prev) => self.words[prev].end,
            None => self.segment.range.start,
        };
        self.text.get(start..end).unwrap_or_default()
    }

    fn cue(&self, words: Range<usize>) -> Cue {
        let range = self.words[words.start].start..self.words[words.end - 1].end;
        Cue {
            words: text::collapse_whitespace(&self.text[range.clone()]),
            range,
        }
    }

    /// Skips fillers, "note to self" and a leading date phrase from word `p` on.
    fn skip_lead(&self, mut p: usize, cues: &mut Vec<Cue>) -> usize {
        loop {
            if FILLERS.contains(&self.at(p)) {
                p += 1;
            } else if self.starts_with(p, &["note", "to", "self"]) {
                cues.push(self.cue(p..p + 3));
                p += 3;
            } else if let Some(d) = self.dates.iter().find(|d| d.words.start == p) {
                p = d.words.end;
            } else {
                return p;
            }
        }
    }

    /// A to-do marker at word `p` ("todo:", "TODO", "to do -", "action item:"): the
    /// index after it and the rule it stands for.
    fn marker(&self, p: usize) -> Option<(usize, TaskRule)> {
        let (end, rule) = match self.at(p) {
            "todo" | "to-do" | "task" | "fixme" => (p + 1, TaskRule::TodoMarker),
            "to" if self.at(p + 1) == "do" => (p + 2, TaskRule::TodoMarker),
            "action" if self.at(p + 1) == "item" => (p + 2, TaskRule::TodoMarker),
            "reminder" | "remember" => (p + 1, TaskRule::Reminder),
            _ => return None,
        };
        let shouting = self.text.get(self.words[p].start..self.words[p].end) == Some("TODO");
        let separated = self
            .gap_before(end)
            .trim_start()
            .starts_with([':', '-', '–', '—']);
        (separated || shouting).then_some((end, rule))
    }

    /// A cue phrase starting at word `p`. `alone`: the phrase opens the sentence, so a
    /// subject may be left out ("Need to call Bob").
    fn cue_phrase(&self, p: usize, alone: bool) -> Option<CueMatch> {
        let subject = SUBJECTS.contains(&self.at(p));
        let mut q = p;
        if subject {
            q += 1;
            while ADVERBS.contains(&self.at(q)) {
                q += 1;
            }
        }
        let (phrase, kind, start) = CUE_PHRASES.iter().find_map(|(phrase, kind, needs)| {
            let (at, allowed) = match needs {
                Subject::None => (p, true),
                Subject::Optional => (q, subject || alone),
                Subject::Required => (q, subject),
            };
            (allowed && self.starts_with(at, phrase)).then_some((phrase, kind, at))
        })?;
        let end = start + phrase.len();
        let mut verb = end;
        while ADVERBS.contains(&self.at(verb)) {
            verb += 1;
        }
        let found = CueMatch {
            kind: *kind,
            words: p..end,
            verb,
        };
        self.cue_holds(&found).then_some(found)
    }

    /// Whether what follows a cue phrase makes it a task.
    fn cue_holds(&self, cue: &CueMatch) -> bool {
        let verb = self.at(cue.verb);
        if verb.is_empty() || matches!(verb, "not" | "never" | "no") {
            return false;
        }
        // "I should have called", "we must have missed it": a regret or a guess.
        let regret = matches!(verb, "have" | "'ve") && is_participle(self.at(cue.verb + 1));
        let last_phrase_word = self.at(cue.words.end - 1);
        match cue.kind {
            CueKind::Reminder => true,
            CueKind::Obligation => {
                let next = self.at(cue.verb + 1);
                let figure_of_speech = SPEECH_VERBS.contains(&verb)
                    || (verb == "be" && next == "honest")
                    || (verb == "tell" && next == "you")
                    // "I have to go." alone is a way of saying goodbye.
                    || (verb == "go" && cue.verb + 1 == self.words.len());
                // "You must be tired": a guess, not a duty.
                let guess = last_phrase_word == "must" && verb == "be";
                !(regret || figure_of_speech || guess)
            }
            CueKind::Advice | CueKind::Intention => !regret && is_task_verb(verb),
        }
    }

    /// A sentence-opening verb from the task-verb list at `p`.
    fn imperative(&self, p: usize) -> bool {
        let verb = self.at(p);
        if !is_task_verb(verb) || p + 1 >= self.words.len() {
            return false;
        }
        if NOUN_FOLLOWERS.contains(&self.at(p + 1))
            || PAST_COPULAS.contains(&self.at(p + 2))
            || matches!(self.at(p + 2), "is" | "are" | "went" | "has" | "had")
        {
            return false;
        }
        if SET_PHRASES.iter().any(|phrase| self.starts_with(p, phrase)) {
            return false;
        }
        // "Plan B failed", "Test results came back": a noun phrase with its own verb.
        let second = self.at(p + 2);
        let ends_clause = p + 3 >= self.words.len()
            || matches!(
                self.at(p + 3),
                "back" | "up" | "down" | "out" | "off" | "again"
            );
        if !DETERMINERS.contains(&self.at(p + 1))
            && (IRREGULAR_PAST.contains(&second)
                || (ends_clause && second.len() > 3 && second.ends_with("ed")))
        {
            return false;
        }
        // "Walk in the park was lovely": a past copula in the same clause.
        for i in p + 1..self.words.len() {
            if is_clause_break(self.gap_before(i)) {
                break;
            }
            if PAST_COPULAS.contains(&self.at(i)) {
                return false;
            }
        }
        // "Read the book yesterday": the past, spelt like an imperative.
        !(SAME_FORM_PAST.contains(&verb) && self.past())
    }

    /// Whether the sentence is about the past.
    fn past(&self) -> bool {
        self.any(PAST_MARKERS)
            || self.words.windows(2).any(|w| {
                w[0].lower == "last"
                    && matches!(
                        w[1].lower.as_str(),
                        "night" | "week" | "weekend" | "month" | "year" | "time"
                    )
            })
    }

    /// A cue phrase at the start of a later clause: "The sink leaks, I need to call the
    /// plumber", "…so remember to…". Only phrases with a subject or reminders: "need to"
    /// alone inside a sentence ("if you need to") is no cue.
    fn clause_cue(&self, from: usize) -> Option<CueMatch> {
        (from + 1..self.words.len())
            .filter(|&q| {
                is_clause_break(self.gap_before(q))
                    || matches!(self.at(q - 1), "so" | "and" | "but" | "then")
            })
            .find_map(|q| self.cue_phrase(q, false))
    }

    /// "The rent is due Friday", "Slides by Monday": a deadline with nothing that makes the
    /// sentence a statement about the past or about someone.
    fn deadline(&self, p: usize, due: Option<&DueMatch>) -> Option<Cue> {
        let due = due.filter(|d| d.deadline && d.words.start > p)?;
        if PRONOUNS.contains(&self.at(p)) || self.past() {
            return None;
        }
        let before = &self.words[p..due.words.start];
        let statement = before.iter().any(|w| {
            STATEMENT_VERBS.contains(&w.lower.as_str())
                || (w.lower.len() > 4 && w.lower.ends_with("ed") && !w.lower.ends_with("eed"))
        });
        (!statement).then(|| self.cue(due.words.start..due.words.start + 1))
    }

    fn is_question(&self) -> bool {
        let s = &self.text[self.segment.range.clone()];
        s.trim_end_matches(['"', '\'', '”', '’', ')', ']', '»', ' '])
            .ends_with(['?', '？'])
    }

    fn is_quote(&self) -> bool {
        let s = &self.text[self.segment.range.clone()];
        s.starts_with(['"', '“', '„', '«', '»', '‘', '\'', '「'])
    }
}

fn is_task_verb(w: &str) -> bool {
    TASK_VERBS.binary_search(&w).is_ok()
}

fn is_clause_break(gap: &str) -> bool {
    gap.contains([',', ';', ':', '–', '—', '(']) || gap.contains(" - ")
}

fn is_participle(w: &str) -> bool {
    IRREGULAR_PARTICIPLES.contains(&w) || (w.len() > 3 && w.ends_with("ed"))
}

fn analyse(text: &str, segment: &Segment, now: &Zoned) -> Option<TaskSuggestion> {
    let words = text::words(text, segment.range.clone());
    let dates = due::find(&words, now);
    let s = Sentence {
        text,
        segment,
        words,
        dates,
    };
    let mut cues = Vec::new();
    let mut rule = None;
    if let Some(checkbox) = &segment.checkbox {
        rule = Some(TaskRule::Checkbox);
        cues.push(Cue {
            range: checkbox.clone(),
            words: text[checkbox.clone()].to_owned(),
        });
    }
    let mut p = s.skip_lead(0, &mut cues);
    if let Some((end, marker_rule)) = s.marker(p) {
        cues.push(s.cue(p..end));
        rule.get_or_insert(marker_rule);
        p = s.skip_lead(end, &mut cues);
    }
    let explicit = rule.is_some();
    if !explicit && (s.is_question() || s.is_quote()) {
        return None;
    }
    // The title starts at the task's verb; `title_from` is that word's index.
    let mut title_from = p;
    if let Some(cue) = s.cue_phrase(p, true) {
        cues.push(s.cue(cue.words.clone()));
        rule.get_or_insert(cue.kind.rule());
        title_from = cue.verb;
    } else if !explicit {
        if s.imperative(p) {
            cues.push(s.cue(p..p + 1));
            rule = Some(TaskRule::Imperative);
        } else if let Some(cue) = s.clause_cue(p) {
            cues.push(s.cue(cue.words.clone()));
            rule = Some(cue.kind.rule());
            title_from = cue.verb;
        }
    }
    let due = due::pick(&s.dates);
    if rule.is_none()
        && let Some(cue) = s.deadline(p, due)
    {
        cues.push(cue);
        rule = Some(TaskRule::Deadline);
    }
    let rule = rule?;

    let title = title(&s, title_from, due, rule)?;
    let mut adjustments = Vec::new();
    let mut adjust = |reason: AdjustmentReason| {
        adjustments.push(Adjustment {
            reason,
            delta: reason.delta(),
        });
    };
    if due.is_some() {
        adjust(AdjustmentReason::DueDate);
    }
    if segment.list_item && rule != TaskRule::Checkbox {
        adjust(AdjustmentReason::ListItem);
    }
    if s.any(HEDGES) {
        adjust(AdjustmentReason::Hedged);
    }
    if s.words.len() > LONG_SENTENCE_WORDS {
        adjust(AdjustmentReason::Long);
    }
    let confidence = adjustments
        .iter()
        .fold(rule.base_confidence(), |c, a| c + a.delta)
        .clamp(0.0, MAX_TASK_CONFIDENCE);
    cues.sort_by_key(|c| c.range.start);
    Some(TaskSuggestion {
        title,
        due: due.map(|d| d.date),
        confidence,
        rule,
        evidence: TaskEvidence {
            sentence: segment.range.clone(),
            cues,
            due_phrase: due.map(|d| d.range.clone()),
            adjustments,
        },
    })
}

/// The title: from word `from` to the sentence's end, without a due phrase
/// that ends it, trailing punctuation, or (for a bare deadline) a trailing "is"/"are".
fn title(s: &Sentence<'_>, from: usize, due: Option<&DueMatch>, rule: TaskRule) -> Option<String> {
    let range = &s.segment.range;
    // From the first word on: a leading emoji or bracket is decoration. Only a sentence
    // without words (a checkbox with an emoji) keeps its whole text.
    let start = match s.words.get(from) {
        Some(word) => word.start,
        None if s.words.is_empty() => range.start,
        None => return None,
    };
    let mut end = range.end;
    if let Some(due) = due
        && due.words.end == s.words.len()
        && due.words.start > from
    {
        end = due.range.start;
    }
    let mut t = s.text.get(start..end)?.trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, '.' | ',' | ';' | ':' | '!' | '-' | '–' | '—' | '…')
    });
    if rule == TaskRule::Deadline {
        for copula in [" is", " are"] {
            if t.len() > copula.len()
                && t.get(t.len() - copula.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(copula))
            {
                t = t[..t.len() - copula.len()].trim_end();
            }
        }
    }
    let t = text::collapse_whitespace(t);
    let mut chars = t.chars();
    let first = chars.next()?;
    Some(first.to_uppercase().chain(chars).collect())
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
