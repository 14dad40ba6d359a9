use super::*;

fn store(capacity: usize) -> FeedbackStore {
    let cfg = FeedbackConfig {
        capacity,
        half_life: 60.0,
        labels: vec!["cat".into(), "dog".into(), "emu".into()],
        classes: 3,
    };
    FeedbackStore::new(cfg, vec!["c00".into(), "c01".into(), "full".into()])
}

fn item(id: &str, index: usize, label: FeedbackLabel) -> FeedbackItem {
    FeedbackItem { id: id.into(), index, label }
}

#[test]
fn counts_the_served_answer_and_every_config_once_a_shadow_check_ran() {
    let mut s = store(100);
    let (seq, id) = s.open(None, 2);
    assert!(id.starts_with("d-") && id.ends_with(&format!("-{seq}")), "{id}");
    s.answered(seq, "c00", &[(Some(0), 1), (None, 2)]);
    // Image 0: c00 said "dog" at exit 0; the shadow check says c01 and full say "cat".
    assert!(s.shadowed(1.0, seq, 0, vec![(Some(0), 1), (Some(1), 0), (None, 0)]).is_empty());
    let (counted, correct) = s.feedback(2.0, &[item(&id, 0, FeedbackLabel::Name("cat".into()))]).unwrap();
    assert_eq!(correct, 0);
    let by: Vec<(usize, bool)> = counted.iter().map(|c| (c.config, c.correct)).collect();
    assert_eq!(by, [(0, false), (1, true), (2, true)]);
    // Image 1: the label first, the shadow check later; the served config counts once.
    let (counted, correct) = s.feedback(3.0, &[item(&id, 1, FeedbackLabel::Index(2))]).unwrap();
    assert_eq!((counted.len(), correct), (1, 1));
    let later = s.shadowed(4.0, seq, 1, vec![(None, 2), (None, 2), (None, 1)]);
    assert_eq!(later.iter().map(|c| (c.config, c.correct)).collect::<Vec<_>>(), [(1, true), (2, false)]);
    let c00 = s.accuracy(0).unwrap();
    // One right, one wrong a second later: about half (the newer weighs a little more).
    assert_eq!(c00.samples_total, 2);
    assert!((c00.accuracy - 0.5).abs() < 0.01, "{c00:?}");
    assert!(c00.lower_bound < 0.5);
    assert_eq!(s.accuracy(2).unwrap().samples_total, 2);
    let sum = s.summary();
    assert_eq!((sum.accepted_total, sum.shadowed_total, sum.kept), (2, 2, 2));
}

#[test]
fn refuses_bad_feedback_whole_and_counts_nothing() {
    let mut s = store(100);
    let (seq, id) = s.open(Some("req-7"), 1);
    assert_eq!(id, "req-7");
    // Not answered yet.
    let e = s.feedback(0.0, &[item(&id, 0, FeedbackLabel::Index(0))]).unwrap_err();
    assert!(matches!(e, FeedbackError::Conflict(_)), "{e}");
    s.answered(seq, "c01", &[(None, 0)]);
    let cases = [
        (vec![], "no feedback items"),
        (vec![item("nope", 0, FeedbackLabel::Index(0))], "unknown answer id \"nope\""),
        (vec![item(&id, 0, FeedbackLabel::Index(3))], "out of range"),
        (vec![item(&id, 0, FeedbackLabel::Index(-1))], "out of range"),
        (vec![item(&id, 0, FeedbackLabel::Name("yak".into()))], "unknown label \"yak\""),
        (vec![item(&id, 1, FeedbackLabel::Index(0))], "index 1 is past"),
        // A good item with a bad one: neither counts.
        (
            vec![item(&id, 0, FeedbackLabel::Index(0)), item("nope", 0, FeedbackLabel::Index(0))],
            "item 1: unknown",
        ),
        (vec![item(&id, 0, FeedbackLabel::Index(0)), item(&id, 0, FeedbackLabel::Index(1))], "already has"),
    ];
    for (items, want) in cases {
        let e = s.feedback(0.0, &items).unwrap_err();
        assert!(e.to_string().contains(want), "{e} lacks {want}");
    }
    assert_eq!(s.summary().accepted_total, 0);
    assert!(s.accuracy(1).is_none());
    s.feedback(0.0, &[item(&id, 0, FeedbackLabel::Index(0))]).unwrap();
    let e = s.feedback(0.0, &[item(&id, 0, FeedbackLabel::Index(0))]).unwrap_err();
    assert!(matches!(e, FeedbackError::Conflict(_)), "{e}");
    assert_eq!(s.accuracy(1).unwrap().accuracy, 1.0);
}

#[test]
fn keeps_the_newest_images_and_stays_bounded_under_failures() {
    let mut s = store(9);
    let (first, first_id) = s.open(None, 4);
    s.answered(first, "full", &[(None, 0); 4]);
    for _ in 0..3 {
        let (seq, _) = s.open(None, 2);
        s.answered(seq, "full", &[(None, 0); 2]);
    }
    // 4 + 2 + 2 + 2 > 9: the first answer went.
    assert_eq!(s.summary().kept, 6);
    let e = s.feedback(0.0, &[item(&first_id, 0, FeedbackLabel::Index(0))]).unwrap_err();
    assert!(matches!(e, FeedbackError::UnknownId(_)), "{e}");
    // Too large for the store: answered, but not kept.
    let (big, _) = s.open(None, 10);
    s.answered(big, "full", &[(None, 0); 10]);
    assert_eq!(s.summary().kept, 6);
    // A million refused requests leave the store's bookkeeping bounded.
    for _ in 0..1_000_000 {
        let (seq, _) = s.open(None, 1);
        s.forget(seq);
    }
    assert_eq!(s.summary().kept, 6);
    assert!(s.order.len() <= 2 * s.records.len() + 1025, "{}", s.order.len());
    // A reused client id points at the newest answer.
    let (a, _) = s.open(Some("x"), 1);
    s.answered(a, "full", &[(None, 0)]);
    let (b, _) = s.open(Some("x"), 1);
    s.answered(b, "c00", &[(Some(0), 1)]);
    let (counted, correct) = s.feedback(0.0, &[item("x", 0, FeedbackLabel::Index(1))]).unwrap();
    assert_eq!((counted[0].config, correct), (0, 1));
}
