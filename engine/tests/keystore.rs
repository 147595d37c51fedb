//! The key hierarchy (keystore.rs) end to end with the KMS core (kms.rs), and sealed page
//! chains read back. The KMS sits above the keystore, so these run from outside the crate.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use engine::keystore::*;
use engine::kms::Kms;
use engine::pages::{addr_pack, Cookie, Docs, Lsn, PageError, PageImage};

fn setup() -> (Kms, Keystore, ChaCha8Rng) {
    let kms = Kms::new(7);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut krng = ChaCha8Rng::seed_from_u64(10);
    let ks = Keystore::genesis(&mut rng, |kek, aad| kms.wrap(1, aad, kek, &mut krng));
    (kms, ks, rng)
}

/// The KEK as the KMS unwraps it for `ks`.
fn kek_of(kms: &Kms, ks: &Keystore) -> KeyBytes {
    let bytes = kms
        .unwrap_key(ks.cmk_version, &kek_aad(ks.kek_version), &ks.wrapped_kek)
        .expect("the KMS opens the KEK");
    kek_from(bytes, ks.kek_version).unwrap()
}

#[test]
fn the_hierarchy_opens_the_data_key_through_the_kms() {
    let (kms, ks, _) = setup();
    let dk = ks.data_key(&kek_of(&kms, &ks)).unwrap();
    // Another KEK cannot open the data key.
    let mut other = kek_of(&kms, &ks);
    other[0] ^= 1;
    assert!(matches!(ks.data_key(&other), Err(KeyError::Decrypt { .. })));
    let sealed = dk.seal_page("c0", 3, 0, b"page image", [1; NONCE_LEN]);
    assert_ne!(&sealed[NONCE_LEN..], b"page image");
    let cookie = addr_pack(3, 11, 0, &sealed).unwrap();
    assert_eq!(dk.open_page("c0", &cookie, &sealed).unwrap(), b"page image");
}

#[test]
fn kek_and_cmk_rotations_keep_the_data_key_and_advance_the_keystore() {
    let (kms, ks0, mut rng) = setup();
    let dk0 = ks0.data_key(&kek_of(&kms, &ks0)).unwrap();

    // KEK rotation: a fresh KEK, wrapped by the KMS under the current CMK.
    let kek0 = kek_of(&kms, &ks0);
    let mut krng = ChaCha8Rng::seed_from_u64(11);
    let new_kek = fresh_key(&mut rng);
    let wrapped = kms.wrap(1, &kek_aad(2), &new_kek, &mut krng);
    let rot = ks0
        .rotate_kek(&kek0, &new_kek, wrapped, nonce(&mut rng))
        .unwrap();
    let mut ks1 = ks0.clone();
    assert!(ks1.apply(&rot, 100));
    assert_eq!((ks1.kek_version, ks1.cmk_version, ks1.ts), (2, 1, 100));
    assert_ne!(ks1.wrapped_kek, ks0.wrapped_kek);
    assert_eq!(ks1.data_key(&kek_of(&kms, &ks1)).unwrap(), dk0);
    // The same rotation again does not fit the new keystore: no change.
    assert!(!ks1.clone().apply(&rot, 200));

    // CMK rotation: the same KEK, wrapped under the next CMK version.
    let kek1 = kek_of(&kms, &ks1);
    let rot = Rotation::Cmk {
        kek_version: 2,
        cmk_version: 2,
        wrapped_kek: kms.wrap(2, &kek_aad(2), &kek1, &mut krng),
    };
    // Prepared for KEK v1 (a KEK rotation committed first): does not fit.
    let stale = Rotation::Cmk {
        kek_version: 1,
        cmk_version: 2,
        wrapped_kek: vec![],
    };
    assert!(!ks1.clone().apply(&stale, 250));
    let mut ks2 = ks1.clone();
    assert!(ks2.apply(&rot, 300));
    assert_eq!((ks2.kek_version, ks2.cmk_version, ks2.ts), (2, 2, 300));
    assert_eq!(kek_of(&kms, &ks2), kek1);
    assert_eq!(ks2.data_key(&kek1).unwrap(), dk0);
    // The old CMK version cannot open the re-wrapped KEK.
    assert!(kms.unwrap_key(1, &kek_aad(2), &ks2.wrapped_kek).is_err());
    // A rotation skipping a version does not apply.
    let skip = Rotation::Cmk {
        kek_version: 2,
        cmk_version: 4,
        wrapped_kek: vec![],
    };
    assert!(!ks2.clone().apply(&skip, 400));
    // The keystore page round-trips.
    assert_eq!(Keystore::decode(&ks2.encode()).unwrap(), ks2);
}

#[test]
fn load_key_refuses_a_persisted_keystore_behind_the_committed_one() {
    let (_, ks, _) = setup();
    let older = Keystore {
        ts: 5,
        ..ks.clone()
    };
    let newer = Keystore { ts: 9, ..ks };
    assert_eq!(
        load_key(&older, &newer),
        Err(KeyError::StaleKeystore {
            persisted_ts: 5,
            committed_ts: 9
        })
    );
    assert!(load_key(&newer, &newer).is_ok());
    assert!(load_key(&newer, &older).is_ok(), "ahead is not stale");
    assert!(load_key(&older, &newer)
        .unwrap_err()
        .to_string()
        .contains("persisted keystore timestamp 5 is behind last committed timestamp 9"));
}

/// A tampered block, a block served for another page, and a wrong key are all AEAD failures:
/// errors, never garbage data.
#[test]
fn tampered_or_wrongly_keyed_pages_fail_authentication() {
    let (kms, ks, _) = setup();
    let dk = ks.data_key(&kek_of(&kms, &ks)).unwrap();
    let sealed = dk.seal_page("c1", 2, 40, b"documents", [7; NONCE_LEN]);
    let cookie = addr_pack(2, 41, 40, &sealed).unwrap();

    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[NONCE_LEN + 2] ^= 0x80;
    assert!(matches!(
        dk.open_page("c1", &cookie, &tampered),
        Err(KeyError::Decrypt { .. })
    ));
    tampered = sealed.clone();
    tampered[last] ^= 1; // the tag
    assert!(dk.open_page("c1", &cookie, &tampered).is_err());

    assert!(dk.open_page("c2", &cookie, &sealed).is_err(), "other table");
    let moved = Cookie {
        page_id: 3,
        ..cookie
    };
    assert!(dk.open_page("c1", &moved, &sealed).is_err(), "other page");

    let wrong = DataKey::new([3; KEY_LEN]);
    let err = wrong.open_page("c1", &cookie, &sealed).unwrap_err();
    assert!(err.to_string().contains("block 41 of c1 page 2"), "{err}");
    assert!(matches!(
        dk.open_page("c1", &cookie, &sealed[..10]),
        Err(KeyError::Truncated { .. })
    ));
}

/// A wrapped data key is bound to its KEK version through the associated data: the same sealed
/// bytes presented as another version's data key fail authentication, even under the KEK that
/// sealed them. A keystore relabelled, or a rotation's key spliced into an older keystore, is
/// refused rather than opened.
#[test]
fn a_wrapped_data_key_opens_only_as_its_own_kek_versions() {
    let (kms, ks, mut rng) = setup();
    let kek = kek_of(&kms, &ks);
    assert!(ks.data_key(&kek).is_ok());
    let relabelled = Keystore {
        kek_version: 2,
        ..ks.clone()
    };
    assert!(matches!(
        relabelled.data_key(&kek),
        Err(KeyError::Decrypt { .. })
    ));

    // The data key re-sealed for KEK v2, in a keystore that still says v1.
    let new_kek = fresh_key(&mut rng);
    let mut krng = ChaCha8Rng::seed_from_u64(11);
    let wrapped = kms.wrap(1, &kek_aad(2), &new_kek, &mut krng);
    let Rotation::Kek {
        wrapped_data_key, ..
    } = ks
        .rotate_kek(&kek, &new_kek, wrapped, nonce(&mut rng))
        .unwrap()
    else {
        panic!("a KEK rotation");
    };
    let spliced = Keystore {
        wrapped_data_key,
        ..ks.clone()
    };
    assert!(matches!(
        spliced.data_key(&new_kek),
        Err(KeyError::Decrypt { .. })
    ));
    let rotated = Keystore {
        kek_version: 2,
        ..spliced
    };
    assert_eq!(
        rotated.data_key(&new_kek),
        ks.data_key(&kek),
        "as v2 it opens"
    );
}

fn docs(kv: &[(&str, &str)]) -> Docs {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn a_chain_of_full_image_and_deltas_rebuilds_the_page() {
    let key = DataKey::new([5; 32]);
    let seal = |base: Lsn, image: PageImage| {
        key.seal_page("t", 0, base, &image.encode(), [base as u8; 12])
    };
    let full = seal(0, PageImage::Full(docs(&[("a", "1"), ("b", "2")])));
    let d1 = seal(
        5,
        PageImage::Delta(
            [
                ("a".to_string(), None),
                ("c".to_string(), Some(b"3".to_vec())),
            ]
            .into_iter()
            .collect(),
        ),
    );
    let c0 = addr_pack(0, 5, 0, &full).unwrap();
    let c1 = addr_pack(0, 9, 5, &d1).unwrap();
    let page = rebuild("t", &[(c0, full.clone()), (c1, d1.clone())], &key).unwrap();
    assert_eq!(page, docs(&[("b", "2"), ("c", "3")]));
    // A delta cannot start a chain; a flipped byte is caught by the checksum.
    assert!(matches!(
        rebuild("t", &[(c1, d1)], &key),
        Err(BlockError::Page(PageError::ChainStart(9)))
    ));
    let mut bad = full.clone();
    bad[4] ^= 1;
    assert!(matches!(
        rebuild("t", &[(c0, bad.clone())], &key),
        Err(BlockError::Page(PageError::Checksum { .. }))
    ));
    // With a matching checksum (a writer that sealed garbage, or a forged cookie) the AEAD
    // still refuses it; so does the wrong key or the wrong table.
    let forged = addr_pack(0, 5, 0, &bad).unwrap();
    assert!(matches!(
        rebuild("t", &[(forged, bad)], &key),
        Err(BlockError::Key(KeyError::Decrypt { .. }))
    ));
    assert!(rebuild("t", &[(c0, full.clone())], &DataKey::new([6; 32])).is_err());
    assert!(rebuild("u", &[(c0, full)], &key).is_err());
}
