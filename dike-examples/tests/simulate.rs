//! The in-process demo (`dike simulate`) runs to the end and every replica agrees.

#[test]
fn the_in_process_demo_ends_with_all_replicas_agreeing() {
    let mut out = Vec::new();
    let summary = dike_examples::simulate::run(&mut out, 5).expect("simulate runs");
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(summary.values.len(), 5);
    assert!(
        summary.values.iter().all(|v| *v == summary.values[0]),
        "{text}"
    );
    assert!(text.contains("division by zero"), "{text}");
    assert!(text.contains("applied once"), "{text}");
}
