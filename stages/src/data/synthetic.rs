//! A synthetic corpus, so that a recipe runs anywhere without downloads: short stories from a small
//! grammar, arithmetic, and word problems whose answers are checkable (each document's `meta.answer`).
//! Document `i` of a kind depends only on the seed, the kind and `i`, so the corpus is reproducible
//! and can be generated in any order.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::{Document, mix64};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyntheticKind {
    Stories,
    Arithmetic,
    WordProblems,
}

impl SyntheticKind {
    pub const ALL: [SyntheticKind; 3] = [
        SyntheticKind::Stories,
        SyntheticKind::Arithmetic,
        SyntheticKind::WordProblems,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SyntheticKind::Stories => "stories",
            SyntheticKind::Arithmetic => "arithmetic",
            SyntheticKind::WordProblems => "word-problems",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Document `index` of this kind for `seed`.
    pub fn document(self, seed: u64, index: u64) -> Document {
        let mut rng =
            Rng::new(mix64(seed ^ mix64(self as u64 + 1)) ^ mix64(index.wrapping_add(0x1234_5678)));
        let (text, answer) = match self {
            SyntheticKind::Stories => (story(&mut rng), None),
            SyntheticKind::Arithmetic => {
                let (t, a) = arithmetic(&mut rng);
                (t, Some(a))
            }
            SyntheticKind::WordProblems => {
                let (t, a) = word_problem(&mut rng);
                (t, Some(a))
            }
        };
        let mut meta = Map::new();
        meta.insert("kind".to_owned(), Value::from(self.name()));
        if let Some(a) = answer {
            meta.insert("answer".to_owned(), Value::from(a));
        }
        Document {
            text,
            source: format!("synthetic:{}:{index}", self.name()),
            meta: Some(meta),
        }
    }
}

/// `SplitMix64`: tiny, fast and the same on every platform and version.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next_u64() % items.len() as u64) as usize]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

const NAMES: &[&str] = &[
    "Lily", "Tom", "Mia", "Ben", "Zoe", "Max", "Anna", "Leo", "Sara", "Sam", "Ella", "Jack",
    "Nora", "Finn", "Ruby", "Omar", "Ivy", "Theo", "Maya", "Hugo", "Lucy", "Ravi", "Chloe", "Kai",
];
const ANIMALS: &[&str] = &[
    "cat", "dog", "rabbit", "fox", "owl", "turtle", "duck", "bear", "mouse", "frog", "horse",
    "goat", "squirrel", "hedgehog",
];
const PLACES: &[&str] = &[
    "the park",
    "the forest",
    "the beach",
    "the garden",
    "the old library",
    "the market",
    "the hill behind the school",
    "the river bank",
    "the farm",
    "the little town",
    "the snowy mountain",
    "the busy harbour",
];
const OBJECTS: &[&str] = &[
    "a red ball",
    "a shiny key",
    "a small box",
    "a kite",
    "a map",
    "a blue hat",
    "a wooden boat",
    "a jar of honey",
    "a lost letter",
    "a golden coin",
    "a paper star",
    "a music box",
    "a broken clock",
    "a basket of apples",
];
const FEELINGS: &[&str] = &[
    "happy",
    "sad",
    "curious",
    "scared",
    "excited",
    "tired",
    "proud",
    "worried",
    "surprised",
    "calm",
];
const WEATHER: &[&str] = &[
    "The sun was warm.",
    "It was raining softly.",
    "A cold wind was blowing.",
    "The sky was full of clouds.",
    "Snow covered everything.",
    "It was a quiet morning.",
    "The evening was golden and still.",
];
const LESSONS: &[&str] = &[
    "It is good to share with friends.",
    "Asking for help is not a weakness.",
    "Being kind makes everyone happier.",
    "Patience often pays off.",
    "Even small friends can do big things.",
    "Telling the truth is always best.",
    "Trying again is how we learn.",
    "A good friend listens.",
];

fn story(rng: &mut Rng) -> String {
    let hero = rng.pick(NAMES);
    let mut friend = rng.pick(NAMES);
    while friend == hero {
        friend = rng.pick(NAMES);
    }
    let animal = rng.pick(ANIMALS);
    let place = rng.pick(PLACES);
    let object = rng.pick(OBJECTS);
    let object_bare = object.split_once(' ').map_or(object, |(_, rest)| rest);
    let mut s: Vec<String> = Vec::new();
    s.push(match rng.range(0, 3) {
        0 => format!("Once upon a time, there was a {} child named {hero}.", rng.pick(FEELINGS)),
        1 => format!("{hero} lived near {place} with a little {animal}."),
        2 => format!("One day, {hero} and {friend} went to {place}."),
        _ => format!("There was once a {animal} who loved {place}, and a child named {hero} who loved the {animal}."),
    });
    s.push(rng.pick(WEATHER).to_owned());
    s.push(match rng.range(0, 3) {
        0 => format!("At {place}, {hero} found {object} under a tree."),
        1 => format!("{hero} wanted to show {friend} {object}, but it was gone."),
        2 => format!("The {animal} ran up to {hero} holding {object}."),
        _ => format!("{friend} said, \"Look, {hero}! I have {object}.\""),
    });
    for _ in 0..rng.range(1, 4) {
        let feeling = rng.pick(FEELINGS);
        s.push(match rng.range(0, 5) {
            0 => format!("{hero} felt {feeling} and looked around."),
            1 => format!("\"What should we do with the {object_bare}?\" asked {friend}."),
            2 => format!("The {animal} jumped and made a funny sound, and {hero} laughed."),
            3 => format!(
                "They walked for a long time until they reached {}.",
                rng.pick(PLACES)
            ),
            4 => format!("{friend} was {feeling}, so {hero} held {friend}'s hand."),
            _ => format!("{hero} thought about the {object_bare} for a while."),
        });
    }
    s.push(match rng.range(0, 2) {
        0 => format!(
            "In the end, {hero} gave the {object_bare} to {friend}, and both of them smiled."
        ),
        1 => format!("At last, the {animal} helped {hero} find the way home."),
        _ => format!(
            "When the day was over, {hero} and {friend} went home {}.",
            rng.pick(FEELINGS)
        ),
    });
    if rng.chance(60) {
        s.push(rng.pick(LESSONS).to_owned());
    }
    s.join(" ")
}

fn arithmetic(rng: &mut Rng) -> (String, i64) {
    let a = rng.range(2, 999);
    let b = rng.range(2, 999);
    let (question, answer) = match rng.range(0, 4) {
        0 => (format!("{a} + {b}"), a + b),
        1 => (format!("{} - {}", a.max(b), a.min(b)), a.max(b) - a.min(b)),
        2 => {
            let small = rng.range(2, 99);
            (format!("{a} * {small}"), a * small)
        }
        3 => {
            let d = rng.range(2, 30);
            let q = rng.range(2, 300);
            (format!("{} / {d}", d * q), q)
        }
        _ => {
            let c = rng.range(2, 20);
            (format!("({a} + {b}) * {c}"), (a + b) * c)
        }
    };
    let lead = rng.pick(&["What is", "Compute", "Calculate", "Work out"]);
    (
        format!(
            "Question: {lead} {question}?\nAnswer: {question} = {answer}. The answer is {answer}."
        ),
        answer,
    )
}

const ITEMS: &[&str] = &[
    "apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells", "cards",
    "eggs",
];

fn word_problem(rng: &mut Rng) -> (String, i64) {
    let name = rng.pick(NAMES);
    let friend = rng.pick(NAMES);
    let item = rng.pick(ITEMS);
    let a = rng.range(3, 60);
    let b = rng.range(2, 40);
    let (question, reasoning, answer) = match rng.range(0, 4) {
        0 => (
            format!(
                "{name} has {a} {item}. {name} buys {b} more. How many {item} does {name} have now?"
            ),
            format!(
                "{name} starts with {a} {item} and buys {b} more, so {a} + {b} = {}.",
                a + b
            ),
            a + b,
        ),
        1 => {
            let (big, small) = (a.max(b) + 1, a.min(b));
            (
                format!(
                    "{name} had {big} {item} and gave {small} of them to {friend}. How many {item} are left?"
                ),
                format!(
                    "{name} had {big} and gave away {small}, so {big} - {small} = {}.",
                    big - small
                ),
                big - small,
            )
        }
        2 => {
            let boxes = rng.range(2, 12);
            let per = rng.range(2, 25);
            (
                format!(
                    "There are {boxes} boxes with {per} {item} in each box. How many {item} are there in all?"
                ),
                format!(
                    "{boxes} boxes of {per} {item} make {boxes} * {per} = {}.",
                    boxes * per
                ),
                boxes * per,
            )
        }
        3 => {
            let friends = rng.range(2, 8);
            let each = rng.range(2, 15);
            let total = friends * each;
            (
                format!(
                    "{name} shares {total} {item} equally among {friends} friends. How many {item} does each friend get?"
                ),
                format!(
                    "{total} {item} shared by {friends} friends is {total} / {friends} = {each} each."
                ),
                each,
            )
        }
        _ => {
            let price = rng.range(2, 20);
            let count = rng.range(2, 10);
            let paid = price * count + rng.range(0, 50);
            (
                format!(
                    "{name} buys {count} {item} at {price} dollars each and pays with {paid} dollars. How much change does {name} get?"
                ),
                format!(
                    "The {item} cost {count} * {price} = {} dollars, so the change is {paid} - {} = {}.",
                    count * price,
                    count * price,
                    paid - count * price
                ),
                paid - count * price,
            )
        }
    };
    (
        format!("Question: {question}\nAnswer: {reasoning} The answer is {answer}."),
        answer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_corpus_other_seed_other_corpus() {
        for kind in SyntheticKind::ALL {
            assert_eq!(kind.document(7, 3), kind.document(7, 3));
            assert_ne!(kind.document(7, 3).text, kind.document(8, 3).text);
            assert_ne!(kind.document(7, 3).text, kind.document(7, 4).text);
        }
    }

    #[test]
    fn answers_are_checkable() {
        for i in 0..500 {
            let doc = SyntheticKind::Arithmetic.document(1, i);
            let answer = doc.meta.as_ref().unwrap()["answer"].as_i64().unwrap();
            let expr = doc
                .text
                .split("Answer: ")
                .nth(1)
                .unwrap()
                .split(" = ")
                .next()
                .unwrap();
            assert!(doc.text.contains(&format!("{expr}?")), "{}", doc.text);
            assert_eq!(eval(expr), answer, "{}", doc.text);
            let problem = SyntheticKind::WordProblems.document(1, i);
            let answer = problem.meta.as_ref().unwrap()["answer"].as_i64().unwrap();
            assert!(
                problem.text.ends_with(&format!("The answer is {answer}.")),
                "{}",
                problem.text
            );
            assert!(answer >= 0);
        }
    }

    /// A tiny evaluator for the generated expressions: `a op b` or `(a + b) * c`.
    fn eval(expr: &str) -> i64 {
        if let Some(rest) = expr.strip_prefix('(') {
            let (inner, outer) = rest.split_once(") * ").unwrap();
            return eval(inner) * outer.parse::<i64>().unwrap();
        }
        let parts: Vec<&str> = expr.split(' ').collect();
        let (a, b): (i64, i64) = (parts[0].parse().unwrap(), parts[2].parse().unwrap());
        match parts[1] {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            "/" => {
                assert_eq!(a % b, 0);
                a / b
            }
            op => panic!("operator {op}"),
        }
    }

    #[test]
    fn stories_are_varied_prose() {
        let texts: std::collections::HashSet<String> = (0..1000)
            .map(|i| SyntheticKind::Stories.document(5, i).text)
            .collect();
        assert!(texts.len() > 990, "only {} distinct stories", texts.len());
        let words = texts
            .iter()
            .map(|t| t.split_whitespace().count())
            .min()
            .unwrap();
        assert!(words >= 20, "a story of {words} words");
    }
}
