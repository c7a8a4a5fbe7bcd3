use super::*;

#[test]
fn counts_on_the_bus_list_at_most_32_states_and_add_up_the_rest() {
    let counts: Vec<(String, usize)> = (0..100).map(|n| (format!("state\0{n}"), 100 - n)).collect();
    let on_bus = counts_on_bus(&counts);
    assert_eq!(on_bus.len(), MAX_STATES_ON_BUS + 1);
    let total: u32 = on_bus.values().sum();
    assert_eq!(total as usize, counts.iter().map(|(_, n)| n).sum::<usize>());
    assert!(
        on_bus.keys().all(|k| !k.contains('\0')),
        "NUL reached the bus"
    );
    assert_eq!(on_bus["state\\x000"], 100);
}

#[test]
fn membership_batches_are_split_under_a_mebibyte_each() {
    // 4,000 ids of 255 bytes, each escaped four times longer: ~4 MiB in all.
    let ids: Vec<String> = (0..4000)
        .map(|n| format!("{n:05}{}", "\u{1}".repeat(250)))
        .collect();
    let batches = membership_batches(&ids);
    assert!(batches.len() >= 4);
    for batch in &batches {
        let bytes: usize = batch.iter().map(|id| id.len() + 8).sum();
        assert!(bytes <= (1 << 20) + 1100, "{bytes}");
    }
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 4000);
}
