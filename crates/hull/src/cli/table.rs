//! docker's tables: each column as wide as its widest cell, columns apart by at least three
//! spaces (so that scripts can split rows on runs of two or more spaces).

/// Space between two columns.
const GAP: usize = 3;

/// The rows of `cells` (the header first) laid out; the last column is not padded.
pub(crate) fn lines<const N: usize>(cells: &[[String; N]]) -> Vec<String> {
    let width = |c: &str| c.chars().count();
    let mut widths = [0usize; N];
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(c));
        }
    }
    cells
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, c) in row.iter().enumerate() {
                line.push_str(c);
                if i + 1 < N {
                    line.extend(std::iter::repeat_n(' ', widths[i] - width(c) + GAP));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_apart() {
        let rows = [
            ["ID", "IMAGE", "NAME"].map(String::from),
            ["1", "registry.example/debian:12", "x"].map(String::from),
        ];
        let l = super::lines(&rows);
        assert_eq!(l[0], "ID   IMAGE                        NAME");
        assert_eq!(l[1], "1    registry.example/debian:12   x");
    }
}
