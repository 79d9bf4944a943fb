//! The bad-input rows for the `Client` service: proposals and queries that name unknown
//! groups, carry oversized or malformed bodies, or misuse request ids and consistency.

use super::*;

pub(super) fn rows(v: &Vars) -> Vec<Row> {
    let Vars {
        group, a1, a2, a3, ..
    } = v.clone();
    vec![
        row(
            "propose to an unknown group",
            Code::NotFound,
            Some("987654"),
            {
                let (a, cmd) = (a2.clone(), put("a"));
                move || async move {
                    client(&a)
                        .await?
                        .propose(propose_raw(987_654, cmd, String::new()))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "propose to group 0 (the meta group)",
            Code::InvalidArgument,
            Some("group_id is required"),
            {
                let a = a1.clone();
                move || async move {
                    let cmd = MetaCommandBody::delete_group(group);
                    client(&a)
                        .await?
                        .propose(propose_raw(0, cmd, String::new()))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "propose an empty command",
            Code::InvalidArgument,
            Some("empty"),
            {
                let a = a1.clone();
                move || async move {
                    client(&a)
                        .await?
                        .propose(propose_raw(group, Vec::new(), String::new()))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "propose a command of 1 MiB + 1 byte",
            Code::InvalidArgument,
            Some("over the limit"),
            {
                let a = a3.clone();
                move || async move {
                    let cmd = vec![b' '; (1 << 20) + 1];
                    client(&a)
                        .await?
                        .propose(propose_raw(group, cmd, String::new()))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "propose undecodable JSON",
            Code::InvalidArgument,
            Some("decode"),
            {
                let a = a2.clone();
                move || async move {
                    let cmd = b"{\"put\": {\"key\": ".to_vec();
                    client(&a)
                        .await?
                        .propose(propose_raw(group, cmd, String::new()))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "propose JSON naming no command of the plugin",
            Code::InvalidArgument,
            Some("unknown variant"),
            {
                let a = a1.clone();
                move || async move {
                    let cmd = br#"{"drop_everything": {}}"#.to_vec();
                    client(&a)
                        .await?
                        .propose(propose_raw(group, cmd, String::new()))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "propose 0x00 (binary codec) followed by garbage",
            Code::InvalidArgument,
            Some("decode"),
            {
                let a = a1.clone();
                move || async move {
                    let cmd = vec![0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x13];
                    client(&a)
                        .await?
                        .propose(propose_raw(group, cmd, String::new()))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "propose with a 129-byte request_id",
            Code::InvalidArgument,
            Some("128 bytes"),
            {
                let (a, cmd) = (a2.clone(), put("a"));
                move || async move {
                    client(&a)
                        .await?
                        .propose(propose_raw(group, cmd, "r".repeat(129)))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "query with consistency 99",
            Code::InvalidArgument,
            Some("unknown consistency 99"),
            {
                let a = a1.clone();
                move || async move {
                    client(&a)
                        .await?
                        .query(QueryRequest {
                            group_id: group,
                            request: br#"{"get":{"key":"k00"}}"#.to_vec(),
                            consistency: 99,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "query with undecodable JSON",
            Code::InvalidArgument,
            Some("decode"),
            {
                let a = a3.clone();
                move || async move {
                    client(&a)
                        .await?
                        .query(QueryRequest {
                            group_id: group,
                            request: b"get k00".to_vec(),
                            consistency: ReadConsistency::Stale as i32,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "stale query of an unknown group",
            Code::NotFound,
            Some("987654"),
            {
                let a = a2.clone();
                move || async move {
                    client(&a)
                        .await?
                        .query(QueryRequest {
                            group_id: 987_654,
                            request: br#"{"get":{"key":"k00"}}"#.to_vec(),
                            consistency: ReadConsistency::Stale as i32,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
    ]
}
