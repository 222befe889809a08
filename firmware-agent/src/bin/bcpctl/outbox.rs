//! `bcpctl outbox [--json] [--verify]`: the outbox's depth, oldest unsynced age, bytes used,
//! last acknowledgement, its images (bytes; pending, synced and evicted counts) and the disk
//! budget's alarm; with `--verify`, every record's seal and chain checked again.

use std::path::Path;

use anyhow::Result;
use bcp_agent::AgentConfig;

pub fn run(config: &Path, json: bool, verify: bool) -> Result<()> {
    let cfg = AgentConfig::load(config)?;
    let outbox = cfg.outbox.open(&cfg.post.id)?;
    let stats = outbox.stats()?;
    let now = chrono::Utc::now();
    let oldest_age_secs = stats
        .oldest_undelivered_recorded_at
        .map(|t| (now - t).num_seconds().max(0));
    let chain = verify.then(|| outbox.verify_chain()).transpose()?;
    let broken = chain.as_ref().and_then(|c| c.first_bad.clone());
    let report = serde_json::json!({
        "post": outbox.post(),
        "depth": stats.depth,
        "oldest_undelivered_recorded_at": stats.oldest_undelivered_recorded_at,
        "oldest_unsynced_age_secs": oldest_age_secs,
        "bytes_used": outbox.bytes_used(),
        "budget_bytes": stats.budget_bytes,
        "high_water": stats.high_water,
        "last_seq": stats.last_seq,
        "last_acked_seq": stats.last_acked_seq,
        "blobs_bytes": stats.blobs_bytes,
        "blobs_pending": stats.blobs_pending,
        "blobs_synced": stats.blobs_synced,
        "blobs_evicted": stats.blobs_evicted,
        "blobs_evicted_total": stats.blobs_evicted_total,
        "full_rejections_total": stats.full_rejections_total,
        "public_key": bcp_record::seal::to_hex(&outbox.public_key()),
        "chain": chain,
    });
    if json {
        println!("{report}");
    } else {
        println!("post:               {}", outbox.post());
        println!("depth:              {}", stats.depth);
        println!(
            "oldest unsynced:    {}",
            oldest_age_secs.map_or("-".to_owned(), |s| format!("{s} s ago"))
        );
        println!("bytes used:         {}", outbox.bytes_used());
        println!("last seq:           {}", stats.last_seq);
        println!("last acked seq:     {}", stats.last_acked_seq);
        println!(
            "images:             {} bytes; {} pending, {} synced, {} evicted",
            stats.blobs_bytes, stats.blobs_pending, stats.blobs_synced, stats.blobs_evicted
        );
        println!(
            "budget:             {}",
            stats
                .budget_bytes
                .map_or("none".to_owned(), |b| format!("{b} bytes"))
        );
        println!(
            "alarm:              {}",
            if stats.high_water {
                "ON (above the high-water mark of the budget)"
            } else {
                "off"
            }
        );
        if let Some(chain) = &chain {
            match &broken {
                None => println!("chain:              ok ({} records)", chain.records),
                Some((seq, why)) => println!("chain:              BROKEN at seq {seq}: {why}"),
            }
        }
    }
    if let Some((seq, why)) = broken {
        anyhow::bail!("outbox chain broken at seq {seq}: {why}");
    }
    Ok(())
}
