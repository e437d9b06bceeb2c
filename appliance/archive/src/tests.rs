//! Every test builds real zip files, with this crate's writer or by hand with the `zip`
//! crate (and, for what no honest writer produces, by editing the bytes of one).

use std::io::{Cursor, Write};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::{date, datetime};
use uuid::Uuid;
use zeroize::Zeroizing;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use crate::manifest::{hex, item_path};
use crate::*;

// ---------------------------------------------------------------- helpers

fn exported_at() -> OffsetDateTime {
    datetime!(2026-03-01 09:30:00.123456 UTC)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn version(n: i32, at: OffsetDateTime, text: &str, tags: &[&str]) -> ExportVersion {
    ExportVersion {
        version: n,
        created_at: at,
        text: Zeroizing::new(text.to_owned()),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        task: None,
    }
}

fn task(status: &str, priority: &str, due: Option<time::Date>) -> Option<ExportTask> {
    Some(ExportTask {
        status: status.to_owned(),
        priority: priority.to_owned(),
        due,
    })
}

/// Several items covering what an export holds: several versions, tasks with and without
/// a due day, Unicode, microseconds, an offset other than UTC, the largest text and the
/// most and longest tags allowed.
fn sample_items() -> Vec<ExportItem> {
    let shopping = ExportItem {
        id: id(1),
        created_at: datetime!(2025-11-02 08:15:30.123456 UTC),
        updated_at: datetime!(2026-01-05 17:00:00.000001 +01:00),
        pinned: true,
        archived: false,
        versions: vec![
            version(
                1,
                datetime!(2025-11-02 08:15:30.123456 UTC),
                "Buy oat milk",
                &["home", "errands"],
            ),
            ExportVersion {
                task: task("open", "normal", Some(date!(2026 - 01 - 10))),
                ..version(
                    2,
                    datetime!(2025-12-24 23:59:59.999999 UTC),
                    "Buy oat milk and coffee",
                    &["home"],
                )
            },
            ExportVersion {
                task: task("done", "high", None),
                ..version(
                    3,
                    datetime!(2026-01-05 17:00:00.000001 +01:00),
                    "Buy oat milk and coffee",
                    &[],
                )
            },
        ],
    };
    let unicode = ExportItem {
        id: id(2),
        created_at: datetime!(2024-02-29 12:00:00.5 -05:30),
        updated_at: datetime!(2024-02-29 12:00:00.5 -05:30),
        pinned: false,
        archived: true,
        versions: vec![ExportVersion {
            task: task("doing", "low", Some(date!(2024 - 12 - 31))),
            ..version(
                1,
                datetime!(2024-02-29 12:00:00.5 -05:30),
                "Grüße aus Zürich — 東京 🌸\nsecond line\t\"quoted\" \\ back\u{0}slash",
                &["日本", "ünïcödé", "emoji 🌸"],
            )
        }],
    };
    let long_tags: Vec<String> = (0..MAX_TAGS)
        .map(|n| format!("{n:02}{}", "é".repeat(MAX_TAG_CHARS - 2)))
        .collect();
    let largest = ExportItem {
        id: id(3),
        created_at: datetime!(2026-02-01 00:00:00 UTC),
        updated_at: datetime!(2026-02-01 00:00:00.000007 UTC),
        pinned: false,
        archived: false,
        versions: vec![ExportVersion {
            version: 1,
            created_at: datetime!(2026-02-01 00:00:00 UTC),
            text: Zeroizing::new("ab".repeat(MAX_TEXT_BYTES / 2)),
            tags: long_tags,
            task: None,
        }],
    };
    vec![shopping, unicode, largest]
}

fn export(items: &[ExportItem]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new()), "olivia", "0.1.0", exported_at());
    for item in items {
        writer.add(item).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn read(bytes: &[u8]) -> Result<(Manifest, Vec<ExportItem>), ArchiveError> {
    read_archive(Cursor::new(bytes), &Limits::default())
}

fn refused(bytes: &[u8]) -> ArchiveError {
    read(bytes).expect_err("the archive should be refused")
}

fn refused_with(bytes: &[u8], limits: Limits) -> ArchiveError {
    read_archive(Cursor::new(bytes), &limits).expect_err("the archive should be refused")
}

/// A zip of exactly these entries, in this order, as they are.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(*name, SimpleFileOptions::default()).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// A manifest that lists `files` with their true checksums and lengths.
fn manifest_for(files: &[(&str, &[u8])]) -> Value {
    json!({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": "2026-03-01T09:30:00.123456Z",
        "appliance_version": "0.1.0",
        "account": "olivia",
        "item_count": files.len(),
        "files": files.iter().map(|(path, data)| json!({
            "path": path, "sha256": sha(data), "bytes": data.len(),
        })).collect::<Vec<_>>(),
    })
}

/// A zip of `manifest` and `files`.
fn archive(manifest: &Value, files: &[(&str, &[u8])]) -> Vec<u8> {
    let manifest = serde_json::to_vec_pretty(manifest).unwrap();
    let mut entries = vec![(MANIFEST_PATH, manifest.as_slice())];
    entries.extend_from_slice(files);
    zip_of(&entries)
}

/// An archive of these files under a manifest that lists them truthfully.
fn honest_archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    archive(&manifest_for(files), files)
}

fn doc(item: &ExportItem) -> Value {
    serde_json::to_value(item).unwrap()
}

fn bytes_of(doc: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(doc).unwrap()
}

/// [`sample_items`] as item files: each one's path and pretty-printed document.
fn sample_files() -> Vec<(String, Vec<u8>)> {
    sample_items()
        .iter()
        .map(|i| (item_path(i.id), bytes_of(&doc(i))))
        .collect()
}

/// A borrowed view of `files`, as [`archive`] and [`manifest_for`] take them.
fn entries(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files.iter().map(|(p, d)| (p.as_str(), &d[..])).collect()
}

/// An honest archive of one item document (which may itself be wrong), named by its id.
fn one_item(doc: &Value) -> (String, Vec<u8>) {
    let id: Uuid = doc["id"].as_str().unwrap().parse().unwrap();
    let path = item_path(id);
    let data = bytes_of(doc);
    let zip = honest_archive(&[(&path, &data)]);
    (path, zip)
}

/// Replaces every occurrence of `from` with `to` (of the same length) in a zip's bytes.
fn patch_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut count = 0;
    let mut at = 0;
    while let Some(found) = bytes
        .get(at..)
        .and_then(|rest| rest.windows(from.len()).position(|w| w == from))
    {
        let start = at + found;
        bytes[start..start + to.len()].copy_from_slice(to);
        at = start + to.len();
        count += 1;
    }
    count
}

/// Sets a little-endian field at `offset` in the `nth` record `signature` of a zip (all of
/// them when `nth` is `None`); returns how many such records there are.
fn patch_records(
    bytes: &mut [u8],
    signature: &[u8; 4],
    nth: Option<usize>,
    offset: usize,
    value: &[u8],
) -> usize {
    let starts: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == signature)
        .map(|(i, _)| i)
        .collect();
    for (n, start) in starts.iter().enumerate() {
        if nth.is_none_or(|nth| nth == n) {
            bytes[start + offset..start + offset + value.len()].copy_from_slice(value);
        }
    }
    starts.len()
}

const LOCAL_HEADER: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_HEADER: &[u8; 4] = b"PK\x01\x02";

// ---------------------------------------------------------------- round trip

#[test]
fn round_trip_restores_every_item_exactly() {
    let items = sample_items();
    let (manifest, read_back) = read(&export(&items)).unwrap();

    assert_eq!(read_back, items);
    // `==` on OffsetDateTime compares instants; the offsets and sub-seconds come back too.
    for (got, want) in read_back.iter().zip(&items) {
        assert_eq!(got.updated_at.offset(), want.updated_at.offset());
        assert_eq!(got.created_at.nanosecond(), want.created_at.nanosecond());
        for (g, w) in got.versions.iter().zip(&want.versions) {
            assert_eq!(g.created_at.offset(), w.created_at.offset());
            assert_eq!(*g.text, *w.text);
        }
    }
    assert_eq!(
        manifest,
        Manifest {
            exported_at: exported_at(),
            appliance_version: "0.1.0".to_owned(),
            account: "olivia".to_owned(),
            item_count: 3,
        }
    );
}

#[test]
fn the_streaming_reader_hands_out_the_same_items_in_order() {
    let items = sample_items();
    let mut reader = ArchiveReader::open(Cursor::new(export(&items)), &Limits::default()).unwrap();
    assert_eq!(reader.manifest().item_count, 3);
    let read_back: Vec<ExportItem> = reader.items().collect::<Result<_, _>>().unwrap();
    assert_eq!(read_back, items);
    // A second pass reads them again.
    assert_eq!(reader.items().count(), 3);
}

#[test]
fn an_empty_vault_round_trips() {
    let (manifest, items) = read(&export(&[])).unwrap();
    assert_eq!(manifest.item_count, 0);
    assert!(items.is_empty());
}

#[test]
fn the_archive_has_the_documented_layout() {
    let items = sample_items();
    let bytes = export(&items);
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
    let names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    let mut expected: Vec<String> = items.iter().map(|i| item_path(i.id)).collect();
    expected.push("manifest.json".to_owned());
    assert_eq!(names, expected, "items first, the manifest last");
    assert_eq!(
        zip.by_index(0).unwrap().unix_mode().map(|m| m & 0o777),
        Some(0o600),
        "decrypted notes are private once unpacked"
    );

    let manifest: Value = serde_json::from_reader(zip.by_name("manifest.json").unwrap()).unwrap();
    assert_eq!(manifest["format"], "contextvault-export");
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["exported_at"], "2026-03-01T09:30:00.123456Z");
    assert_eq!(manifest["account"], "olivia");
    assert_eq!(manifest["item_count"], 3);
    let first = &manifest["files"][0];
    assert_eq!(first["path"], item_path(id(1)));
    assert_eq!(first["sha256"].as_str().unwrap().len(), 64);

    let path = item_path(id(1));
    let item: Value = serde_json::from_reader(zip.by_name(&path).unwrap()).unwrap();
    assert_eq!(item["id"], id(1).to_string());
    assert_eq!(item["updated_at"], "2026-01-05T17:00:00.000001+01:00");
    assert_eq!(item["versions"][0]["task"], Value::Null);
    assert_eq!(
        item["versions"][1]["task"],
        json!({"status": "open", "priority": "normal", "due": "2026-01-10"})
    );
    assert_eq!(item["versions"][2]["task"]["due"], Value::Null);
}

#[test]
fn an_items_directory_entry_is_allowed() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let path = item_path(item.id);
    let manifest = serde_json::to_vec(&manifest_for(&[(&path, &data)])).unwrap();
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    zip.add_directory("items/", options).unwrap();
    zip.start_file(path.as_str(), options).unwrap();
    zip.write_all(&data).unwrap();
    zip.start_file("manifest.json", options).unwrap();
    zip.write_all(&manifest).unwrap();
    let bytes = zip.finish().unwrap().into_inner();

    let (_, items) = read(&bytes).unwrap();
    assert_eq!(items, vec![item.clone()]);
}

// ---------------------------------------------------------------- the container

#[test]
fn a_file_that_is_not_a_zip_is_refused() {
    assert!(matches!(
        refused(b"hello, world"),
        ArchiveError::NotZip { .. }
    ));
    assert!(matches!(refused(b""), ArchiveError::NotZip { .. }));
    // A zip cut short loses its central directory.
    let bytes = export(&sample_items());
    let cut = &bytes[..bytes.len() / 2];
    assert!(matches!(refused(cut), ArchiveError::NotZip { .. }));
}

#[test]
fn an_archive_without_a_manifest_is_refused() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let bytes = zip_of(&[(&item_path(item.id), &data)]);
    let err = refused(&bytes);
    assert!(matches!(err, ArchiveError::MissingManifest), "{err}");
    assert!(err.to_string().contains("no manifest.json"));
}

#[test]
fn an_unknown_format_is_refused() {
    let mut manifest = manifest_for(&[]);
    manifest["format"] = json!("someone-elses-export");
    let err = refused(&archive(&manifest, &[]));
    assert!(
        matches!(&err, ArchiveError::UnknownFormat { found } if found == "someone-elses-export"),
        "{err}"
    );
}

#[test]
fn a_newer_format_version_says_so_even_with_fields_this_version_does_not_know() {
    let mut manifest = manifest_for(&[]);
    manifest["format_version"] = json!(FORMAT_VERSION + 1);
    manifest["encryption"] = json!("something new");
    let err = refused(&archive(&manifest, &[]));
    assert!(
        matches!(err, ArchiveError::NewerFormatVersion { found: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("made by a newer Context Vault"));
}

#[test]
fn format_version_zero_is_refused() {
    let mut manifest = manifest_for(&[]);
    manifest["format_version"] = json!(0);
    let err = refused(&archive(&manifest, &[]));
    assert!(
        matches!(err, ArchiveError::InvalidFormatVersion { found: 0 }),
        "{err}"
    );
}

#[test]
fn malformed_json_is_refused_naming_the_file() {
    let path = item_path(id(1));
    let err = refused(&honest_archive(&[(&path, b"{\"id\": ")]));
    assert!(
        matches!(&err, ArchiveError::Malformed { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(err.to_string().starts_with(&path), "{err}");

    let bytes = zip_of(&[(MANIFEST_PATH, b"not json at all")]);
    let err = refused(&bytes);
    assert!(
        matches!(&err, ArchiveError::Malformed { path, .. } if path == MANIFEST_PATH),
        "{err}"
    );
    assert!(err.to_string().starts_with("manifest.json: "), "{err}");

    // The right JSON syntax, the wrong shape: a missing field.
    let mut manifest = manifest_for(&[]);
    manifest.as_object_mut().unwrap().remove("account");
    let err = refused(&archive(&manifest, &[]));
    assert!(
        matches!(&err, ArchiveError::Malformed { reason, .. } if reason.contains("account")),
        "{err}"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported_without_quoting_it() {
    let mut item = doc(&sample_items()[0]);
    item["versions"][0]["tags"] = json!("my secret tag");
    item["versions"][1]["text"] = json!(["my secret text"]);
    let (path, bytes) = one_item(&item);
    let err = refused(&bytes);
    assert!(
        matches!(&err, ArchiveError::Malformed { path: p, .. } if *p == path),
        "{err}"
    );
    let message = err.to_string();
    assert!(!message.contains("secret"), "{message}");
    assert!(message.contains("expected a sequence"), "{message}");
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    // In the manifest, and in one of its listed files.
    let mut manifest = manifest_for(&[]);
    manifest["comment"] = json!("hello");
    let err = refused(&archive(&manifest, &[]));
    assert!(
        matches!(&err, ArchiveError::UnknownField { path, reason }
            if path == MANIFEST_PATH && reason.contains("comment")),
        "{err}"
    );
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let path = item_path(item.id);
    let mut manifest = manifest_for(&[(&path, &data)]);
    manifest["files"][0]["mode"] = json!(420);
    let err = refused(&archive(&manifest, &[(&path, &data)]));
    assert!(
        matches!(&err, ArchiveError::UnknownField { reason, .. } if reason.contains("mode")),
        "{err}"
    );

    // In an item, a version, a task.
    let edits: [fn(&mut Value); 3] = [
        |d| d["colour"] = json!("red"),
        |d| d["versions"][0]["colour"] = json!("red"),
        |d| d["versions"][1]["task"]["colour"] = json!("red"),
    ];
    for edit in edits {
        let mut item = doc(&sample_items()[0]);
        edit(&mut item);
        let (path, bytes) = one_item(&item);
        let err = refused(&bytes);
        assert!(
            matches!(&err, ArchiveError::UnknownField { path: p, reason }
                if *p == path && reason.contains("colour")),
            "{err}"
        );
        assert!(err.to_string().starts_with(&path), "{err}");
    }
}

// ---------------------------------------------------------------- which entries there are

#[test]
fn a_listed_entry_that_is_missing_is_refused() {
    let files = sample_files();
    let listed = entries(&files);
    // All three listed, only the first and last present.
    let bytes = archive(&manifest_for(&listed), &[listed[0], listed[2]]);
    let err = refused(&bytes);
    assert!(
        matches!(&err, ArchiveError::MissingEntry { path } if *path == files[1].0),
        "{err}"
    );
    assert!(err.to_string().contains("missing from the archive"));
}

#[test]
fn an_entry_that_is_not_listed_is_refused() {
    let files = sample_files();
    let all = entries(&files);
    let bytes = archive(&manifest_for(&all[..2]), &all);
    let err = refused(&bytes);
    assert!(
        matches!(&err, ArchiveError::UnlistedEntry { path } if *path == files[2].0),
        "{err}"
    );
    assert!(err.to_string().contains("not listed in the manifest"));
}

#[test]
fn two_entries_with_the_same_name_are_refused() {
    // No honest writer makes this: write two names of the same length, then rename the
    // second to the first in both of its headers.
    let (first, second) = (item_path(id(1)), item_path(id(2)));
    let mut bytes = zip_of(&[(MANIFEST_PATH, b"{}"), (&first, b"one"), (&second, b"two")]);
    assert_eq!(
        patch_all(&mut bytes, second.as_bytes(), first.as_bytes()),
        2
    );
    assert!(matches!(refused(&bytes), ArchiveError::DuplicateEntry));
}

#[test]
fn a_file_listed_twice_is_refused() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let path = item_path(item.id);
    let manifest = manifest_for(&[(&path, &data), (&path, &data)]);
    let err = refused(&archive(&manifest, &[(&path, &data)]));
    assert!(
        matches!(&err, ArchiveError::DuplicateListing { path: p } if *p == path),
        "{err}"
    );
}

#[test]
fn names_other_than_items_uuid_json_are_refused() {
    // With letters, so that its upper-case spelling differs.
    let id = Uuid::from_u128(0x0190_abcd_ef00_7000_8000_0000_0000_00aa);
    let uuid = id.to_string();
    let cases = [
        (format!("items/../{uuid}.json"), "leaves the archive"),
        (format!("../{uuid}.json"), "leaves the archive"),
        (format!("/items/{uuid}.json"), "absolute"),
        (format!("C:/items/{uuid}.json"), "absolute"),
        (format!("items\\{uuid}.json"), "backslash"),
        (format!("items/sub/{uuid}.json"), "only manifest.json"),
        (format!("notes/{uuid}.json"), "only manifest.json"),
        (format!("items/{uuid}.txt"), "only manifest.json"),
        (format!("items/{uuid}.json.exe"), "only manifest.json"),
        // One item, one possible name: no upper case, no other uuid spelling.
        (
            format!("items/{}.json", uuid.to_uppercase()),
            "only manifest.json",
        ),
        (format!("items/{}.json", id.simple()), "only manifest.json"),
        (format!("items/{{{uuid}}}.json"), "only manifest.json"),
        ("readme.txt".to_owned(), "only manifest.json"),
    ];
    for (name, why) in cases {
        // As an entry of the zip. The zip writer tidies some names, so the entry is
        // written under a stand-in of the same length, renamed in the bytes afterwards.
        let stand_in = "q".repeat(name.len());
        let mut bytes = zip_of(&[
            (MANIFEST_PATH, &bytes_of(&manifest_for(&[]))),
            (&stand_in, b"{}"),
        ]);
        assert_eq!(
            patch_all(&mut bytes, stand_in.as_bytes(), name.as_bytes()),
            2
        );
        let err = refused(&bytes);
        assert!(
            matches!(&err, ArchiveError::BadPath { reason, .. } if reason.contains(why)),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("not allowed"), "{err}");
        // …and as a name in the manifest.
        let bytes = archive(&manifest_for(&[(&name, b"{}")]), &[]);
        let err = refused(&bytes);
        assert!(
            matches!(&err, ArchiveError::BadPath { reason, .. } if reason.contains(why)),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_symbolic_link_is_refused() {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    zip.start_file("manifest.json", options).unwrap();
    zip.write_all(&bytes_of(&manifest_for(&[]))).unwrap();
    zip.add_symlink(item_path(id(1)), "/etc/passwd", options)
        .unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let err = refused(&bytes);
    assert!(
        matches!(&err, ArchiveError::BadPath { path, reason: "a symbolic link" }
            if *path == item_path(id(1))),
        "{err}"
    );
}

#[test]
fn a_directory_other_than_items_is_refused() {
    for dir in ["notes/", "items/sub/"] {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default();
        zip.start_file("manifest.json", options).unwrap();
        zip.write_all(&bytes_of(&manifest_for(&[]))).unwrap();
        zip.add_directory(dir, options).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let err = refused(&bytes);
        assert!(
            matches!(&err, ArchiveError::BadPath { reason, .. } if reason.contains("directory")),
            "{dir}: {err}"
        );
    }
}

#[test]
fn an_encrypted_entry_is_refused() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let mut bytes = honest_archive(&[(&item_path(item.id), &data)]);
    // Bit 0 of the general-purpose flags (offset 8 of a central directory header).
    assert_eq!(
        patch_records(&mut bytes, CENTRAL_HEADER, None, 8, &[0x01]),
        2
    );
    let err = refused(&bytes);
    assert!(
        matches!(
            &err,
            ArchiveError::BadPath {
                reason: "an encrypted entry",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_item_whose_id_differs_from_its_name_is_refused() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let path = item_path(id(99));
    let err = refused(&honest_archive(&[(&path, &data)]));
    assert!(
        matches!(&err, ArchiveError::IdMismatch { path: p, found } if *p == path && *found == item.id),
        "{err}"
    );
    assert!(err.to_string().starts_with(&path));
}

// ---------------------------------------------------------------- integrity

#[test]
fn a_changed_file_fails_its_checksum() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let path = item_path(item.id);
    // Same length, one word changed: only the checksum can tell.
    let changed = String::from_utf8(data.clone())
        .unwrap()
        .replace("oat milk", "cat milk")
        .into_bytes();
    assert_eq!(changed.len(), data.len());
    let err = refused(&archive(
        &manifest_for(&[(&path, &data)]),
        &[(&path, &changed)],
    ));
    assert!(
        matches!(&err, ArchiveError::ChecksumMismatch { path: p } if *p == path),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{path}: its checksum does not match the manifest (the file was changed or damaged)"
        )
    );
}

#[test]
fn a_file_of_another_length_is_refused() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let path = item_path(item.id);
    let mut longer = data.clone();
    longer.push(b'\n');
    let err = refused(&archive(
        &manifest_for(&[(&path, &data)]),
        &[(&path, &longer)],
    ));
    assert!(
        matches!(&err, ArchiveError::SizeMismatch { path: p, listed, actual }
            if *p == path && *listed + 1 == *actual),
        "{err}"
    );
}

#[test]
fn a_checksum_that_is_not_hex_is_refused() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let path = item_path(item.id);
    let mut manifest = manifest_for(&[(&path, &data)]);
    manifest["files"][0]["sha256"] = json!("not a checksum");
    let err = refused(&archive(&manifest, &[(&path, &data)]));
    assert!(
        matches!(&err, ArchiveError::Malformed { path, reason }
            if path == MANIFEST_PATH && reason.contains("checksum")),
        "{err}"
    );
}

#[test]
fn an_item_count_that_differs_from_the_list_is_refused() {
    let item = &sample_items()[0];
    let data = bytes_of(&doc(item));
    let path = item_path(item.id);
    let mut manifest = manifest_for(&[(&path, &data)]);
    manifest["item_count"] = json!(2);
    let err = refused(&archive(&manifest, &[(&path, &data)]));
    assert!(
        matches!(
            err,
            ArchiveError::ItemCountMismatch {
                listed: 2,
                actual: 1
            }
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------- limits

/// 8 MiB of spaces (valid JSON whitespace) deflate to a few kilobytes.
fn bomb() -> Vec<u8> {
    vec![b' '; 32 * 1024 * 1024]
}

#[test]
fn a_zip_bomb_is_stopped_at_the_entry_limit_while_decompressing() {
    let path = item_path(id(1));
    let bomb = bomb();
    // The manifest lies too, so nothing but the real count can stop it.
    let mut manifest = manifest_for(&[(&path, b"{}")]);
    manifest["files"][0]["bytes"] = json!(2);
    let bytes = archive(&manifest, &[(&path, &bomb)]);
    assert!(
        bytes.len() < 64 * 1024,
        "a real bomb: {} bytes",
        bytes.len()
    );

    let limits = Limits {
        max_entry_bytes: 64 * 1024,
        ..Limits::default()
    };
    let err = refused_with(&bytes, limits);
    assert!(
        matches!(&err, ArchiveError::EntryTooLarge { path: p, limit: 65_536 } if *p == path),
        "{err}"
    );
    assert!(err.to_string().starts_with(&path));
}

#[test]
fn a_zip_bomb_declaring_a_small_size_is_stopped() {
    let path = item_path(id(1));
    let mut manifest = manifest_for(&[(&path, b"{}")]);
    manifest["files"][0]["bytes"] = json!(2);
    let mut bytes = archive(&manifest, &[(&path, &bomb())]);
    // Declare 2 bytes uncompressed for the bomb (the second entry), in its local and
    // central headers (offsets 22 and 24).
    let two = 2_u32.to_le_bytes();
    assert_eq!(
        patch_records(&mut bytes, LOCAL_HEADER, Some(1), 22, &two),
        2
    );
    assert_eq!(
        patch_records(&mut bytes, CENTRAL_HEADER, Some(1), 24, &two),
        2
    );
    let err = refused(&bytes);
    assert!(
        matches!(
            err,
            ArchiveError::EntryTooLarge { .. } | ArchiveError::Corrupt { .. }
        ),
        "{err}"
    );
}

#[test]
fn an_entry_the_manifest_says_is_too_large_is_refused_before_unpacking() {
    let path = item_path(id(1));
    let bomb = bomb();
    let err = refused(&honest_archive(&[(&path, &bomb)]));
    assert!(
        matches!(&err, ArchiveError::EntryTooLarge { path: p, limit: 16_777_216 } if *p == path),
        "{err}"
    );
}

#[test]
fn the_total_is_limited_while_decompressing() {
    let files = sample_files();
    let all = entries(&files);
    let limits = Limits {
        max_total_bytes: 8 * 1024,
        ..Limits::default()
    };

    // Honest sizes: refused from the manifest's sum.
    let err = refused_with(&honest_archive(&all), limits);
    assert!(
        matches!(err, ArchiveError::TotalTooLarge { limit: 8192 }),
        "{err}"
    );

    // A size understated in the manifest, under the entry limit but over what is left of
    // the total: refused by the count.
    let path = item_path(id(1));
    let mut manifest = manifest_for(&[(&path, b"{}")]);
    manifest["files"][0]["bytes"] = json!(2);
    let bytes = archive(&manifest, &[(&path, &vec![b' '; 512 * 1024])]);
    let err = refused_with(&bytes, limits);
    assert!(
        matches!(err, ArchiveError::TotalTooLarge { limit: 8192 }),
        "{err}"
    );
}

#[test]
fn too_many_entries_are_refused() {
    let bytes = export(&sample_items());
    let limits = Limits {
        max_entries: 3,
        ..Limits::default()
    };
    let err = refused_with(&bytes, limits);
    assert!(
        matches!(err, ArchiveError::TooManyEntries { limit: 3 }),
        "{err}"
    );
    // Three items and the manifest are four entries.
    let limits = Limits {
        max_entries: 4,
        ..Limits::default()
    };
    assert!(read_archive(Cursor::new(&bytes), &limits).is_ok());
}

// ---------------------------------------------------------------- the items

/// Reads an archive of one sample item changed by `edit`; returns the problem found.
fn item_problem(edit: impl FnOnce(&mut Value)) -> ItemProblem {
    let mut item = doc(&sample_items()[0]);
    edit(&mut item);
    let (path, bytes) = one_item(&item);
    match refused(&bytes) {
        ArchiveError::InvalidItem { path: p, problem } => {
            assert_eq!(p, path);
            problem
        }
        other => panic!("expected an invalid item, got {other:?}: {other}"),
    }
}

#[test]
fn an_item_without_versions_is_refused() {
    assert_eq!(
        item_problem(|d| d["versions"] = json!([])),
        ItemProblem::NoVersions
    );
}

#[test]
fn versions_must_be_numbered_from_one_in_order() {
    assert_eq!(
        item_problem(|d| d["versions"][1]["version"] = json!(3)),
        ItemProblem::VersionNumbering {
            expected: 2,
            found: 3
        }
    );
    assert_eq!(
        item_problem(|d| {
            let v = d["versions"].as_array_mut().unwrap();
            v.swap(0, 1);
        }),
        ItemProblem::VersionNumbering {
            expected: 1,
            found: 2
        }
    );
    assert_eq!(
        item_problem(|d| d["versions"][0]["version"] = json!(0)),
        ItemProblem::VersionNumbering {
            expected: 1,
            found: 0
        }
    );
    assert_eq!(
        item_problem(|d| d["versions"][2]["version"] = json!(2)),
        ItemProblem::VersionNumbering {
            expected: 3,
            found: 2
        }
    );
}

#[test]
fn an_item_updated_before_it_was_created_is_refused() {
    assert_eq!(
        item_problem(|d| d["updated_at"] = json!("2025-11-02T08:15:30.123455Z")),
        ItemProblem::UpdatedBeforeCreated
    );
}

#[test]
fn text_must_be_present_and_at_most_16_kib() {
    assert_eq!(
        item_problem(|d| d["versions"][1]["text"] = json!("")),
        ItemProblem::EmptyText { version: 2 }
    );
    assert_eq!(
        item_problem(|d| d["versions"][0]["text"] = json!("x".repeat(MAX_TEXT_BYTES + 1))),
        ItemProblem::TextTooLong { version: 1 }
    );
    // Bytes, not characters: 8193 two-byte characters are too long.
    assert_eq!(
        item_problem(|d| d["versions"][0]["text"] = json!("é".repeat(MAX_TEXT_BYTES / 2 + 1))),
        ItemProblem::TextTooLong { version: 1 }
    );
}

#[test]
fn tags_are_limited_in_number_length_and_characters() {
    let many: Vec<String> = (0..=MAX_TAGS).map(|n| format!("t{n}")).collect();
    assert_eq!(
        item_problem(|d| d["versions"][0]["tags"] = json!(many)),
        ItemProblem::TooManyTags { version: 1 }
    );
    for bad in [
        String::new(),
        "x".repeat(MAX_TAG_CHARS + 1),
        "bell\u{7}".to_owned(),
        "new\nline".to_owned(),
    ] {
        assert_eq!(
            item_problem(|d| d["versions"][0]["tags"] = json!(["ok", bad])),
            ItemProblem::BadTag {
                version: 1,
                position: 2
            }
        );
    }
}

#[test]
fn task_words_must_be_known() {
    assert!(matches!(
        item_problem(|d| d["versions"][1]["task"]["status"] = json!("blocked")),
        ItemProblem::BadTaskStatus { version: 2, found } if found == "\"blocked\""
    ));
    assert!(matches!(
        item_problem(|d| d["versions"][2]["task"]["priority"] = json!("URGENT")),
        ItemProblem::BadTaskPriority { version: 3, found } if found == "\"URGENT\""
    ));
    // A word from the archive is shown escaped and short, whatever it holds.
    let problem = item_problem(|d| {
        d["versions"][1]["task"]["status"] = json!(format!("\u{1b}[2J{}", "z".repeat(5000)))
    });
    let message = problem.to_string();
    assert!(
        !message.contains('\u{1b}') && message.len() < 300,
        "{message}"
    );
    // A due day is a day.
    let err = {
        let mut item = doc(&sample_items()[0]);
        item["versions"][1]["task"]["due"] = json!("2026-02-30");
        refused(&one_item(&item).1)
    };
    assert!(matches!(err, ArchiveError::Malformed { .. }), "{err}");
}

#[test]
fn nothing_is_returned_when_the_last_item_is_bad() {
    let mut files = sample_files();
    let mut last = doc(&sample_items()[2]);
    last["versions"][0]["text"] = json!("");
    files[2].1 = bytes_of(&last);
    let all = entries(&files);
    let bytes = honest_archive(&all);
    assert!(read(&bytes).is_err());
    let err = ArchiveReader::open(Cursor::new(&bytes), &Limits::default())
        .expect_err("the streaming reader checks every item before handing one out");
    assert!(matches!(err, ArchiveError::InvalidItem { .. }), "{err}");
}

// ---------------------------------------------------------------- writing

#[test]
fn the_writer_refuses_the_same_item_twice() {
    let item = &sample_items()[0];
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new()), "olivia", "0.1.0", exported_at());
    writer.add(item).unwrap();
    let err = writer.add(item).unwrap_err();
    assert!(
        matches!(err, ArchiveError::DuplicateItem { id: d } if d == item.id),
        "{err}"
    );
}

#[test]
fn the_writer_refuses_what_an_import_would_refuse() {
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new()), "olivia", "0.1.0", exported_at());
    let mut empty = sample_items().remove(0);
    empty.versions[0].text = Zeroizing::new(String::new());
    let err = writer.add(&empty).unwrap_err();
    assert!(
        matches!(
            &err,
            ArchiveError::InvalidItem {
                problem: ItemProblem::EmptyText { version: 1 },
                ..
            }
        ),
        "{err}"
    );

    // An item whose history is over the 16 MiB an import takes.
    let mut huge = sample_items().remove(2);
    let first = huge.versions.remove(0);
    huge.versions = (1..=1100)
        .map(|n| ExportVersion {
            version: n,
            text: Zeroizing::new("x".repeat(MAX_TEXT_BYTES)),
            ..first.clone()
        })
        .collect();
    let err = writer.add(&huge).unwrap_err();
    assert!(matches!(err, ArchiveError::EntryTooLarge { .. }), "{err}");

    // An offset with seconds, which RFC 3339 cannot hold.
    let mut far = sample_items().remove(0);
    far.updated_at = far
        .updated_at
        .to_offset(time::UtcOffset::from_hms(1, 0, 30).unwrap());
    let err = writer.add(&far).unwrap_err();
    assert!(matches!(err, ArchiveError::Unwritable { .. }), "{err}");

    // Nothing refused reached the archive.
    let bytes = writer.finish().unwrap().into_inner();
    assert!(read(&bytes).unwrap().1.is_empty());
}

// ---------------------------------------------------------------- privacy

#[test]
fn debug_shows_neither_text_nor_tags() {
    let item = &sample_items()[0];
    let shown = format!("{:?} {:#?}", item.versions[0], item);
    assert!(!shown.contains("oat milk"), "{shown}");
    assert!(!shown.contains("errands"), "{shown}");
    assert!(shown.contains("<12 bytes>"), "{shown}");
}
