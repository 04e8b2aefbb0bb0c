//! Connected components of identifiers (pure): nodes are identifiers, each link row
//! connects all of its identifiers. The result does not depend on the order of nodes
//! or rows.

use std::collections::{BTreeMap, BTreeSet};

use super::Identifier;

/// One profile: its id (the smallest `p-<hash>` of its members) and its members, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub profile_id: String,
    pub members: Vec<Identifier>,
}

/// Components of `nodes` under `rows` (identifiers of a row that are not among
/// `nodes` are ignored: they are blocked or erased), sorted by profile id.
pub fn components(nodes: &BTreeSet<Identifier>, rows: &[Vec<Identifier>]) -> Vec<Component> {
    let index: BTreeMap<&Identifier, usize> = nodes.iter().zip(0..).collect();
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for row in rows {
        let mut members = row.iter().filter_map(|id| index.get(id).copied());
        if let Some(first) = members.next() {
            for other in members {
                let (a, b) = (find(&mut parent, first), find(&mut parent, other));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<Identifier>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(node.clone());
    }
    let mut out: Vec<Component> = groups
        .into_values()
        .map(|members| Component {
            profile_id: members
                .iter()
                .map(Identifier::profile_id)
                .min()
                .unwrap_or_default(),
            members,
        })
        .collect();
    out.sort_by(|a, b| a.profile_id.cmp(&b.profile_id));
    out
}
