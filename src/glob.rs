//! The one pattern language users write for interfaces, header values and rules: `*` matches
//! any run of characters (including `/` and spaces, since interface keys contain both), every
//! other character matches itself. `{id}` in a pattern is literal, so a rule can name a
//! templated interface key exactly.

/// True when `text` matches `pattern` as a whole.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Greedy match with backtracking to the last star: linear in practice, never
    // exponential, whatever the number of stars.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_literals() {
        assert!(matches("GET /api/*", "GET /api/users/{id}"));
        assert!(matches("GET /api/users/{id}", "GET /api/users/{id}"));
        assert!(!matches("GET /api/users/{id}", "GET /api/users/17"));
        assert!(matches("*", ""));
        assert!(matches("*export*", "GET /api/reports/annual-export"));
        assert!(matches("/pkg.*/Get*", "/pkg.Users/GetUser"));
        assert!(!matches("GET /api/*", "POST /api/orders"));
        assert!(!matches("a*b", "a"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("abc", "abcd"));
        assert!(matches("ü*", "über"));
    }
}
