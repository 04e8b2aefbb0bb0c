//! The Damm check digit: detects every single-digit error and every transposition of
//! adjacent digits (H. Michael Damm, 2004).

/// A totally anti-symmetric quasigroup of order 10 (Damm's table).
const TABLE: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// The interim digit after `digits` (each 0..=9; larger values are taken modulo 10).
/// Appending it makes the whole sequence's interim digit 0, which is the check.
pub(super) fn damm(digits: impl IntoIterator<Item = u8>) -> u8 {
    digits.into_iter().fold(0, |interim, d| {
        TABLE[usize::from(interim)][usize::from(d % 10)]
    })
}

#[cfg(test)]
mod tests {
    use super::damm;

    #[test]
    fn wikipedia_example_572_gets_4() {
        assert_eq!(damm([5, 7, 2]), 4);
        assert_eq!(damm([5, 7, 2, 4]), 0);
    }

    #[test]
    fn table_is_a_weakly_totally_antisymmetric_quasigroup() {
        for a in 0..10u8 {
            let mut row: Vec<u8> = (0..10).map(|b| damm_step(a, b)).collect();
            row.sort_unstable();
            assert_eq!(row, (0..10).collect::<Vec<_>>(), "row {a} is a permutation");
            let mut column: Vec<u8> = (0..10).map(|b| damm_step(b, a)).collect();
            column.sort_unstable();
            assert_eq!(
                column,
                (0..10).collect::<Vec<_>>(),
                "column {a} is a permutation"
            );
            assert_eq!(damm_step(a, a), 0, "zero diagonal");
        }
    }

    fn damm_step(interim: u8, digit: u8) -> u8 {
        super::TABLE[usize::from(interim)][usize::from(digit)]
    }
}
