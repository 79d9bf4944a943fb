//! Connecting to a node and turning gRPC errors into messages a person can act on.

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};

use crate::limits;
use crate::proto::v1::admin_client::AdminClient;
use crate::proto::v1::client_client::ClientClient;

pub async fn channel(endpoint: &str) -> anyhow::Result<Channel> {
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    Endpoint::from_shared(url.clone())
        .with_context(|| format!("{endpoint:?} is not a valid endpoint (expected HOST:PORT)"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot reach a flotilla node at {endpoint} (is `flotilla server` running there?)"
            )
        })
}

pub async fn admin(endpoint: &str) -> anyhow::Result<AdminClient<Channel>> {
    Ok(AdminClient::new(channel(endpoint).await?)
        .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX))
}

pub async fn client(endpoint: &str) -> anyhow::Result<ClientClient<Channel>> {
    Ok(ClientClient::new(channel(endpoint).await?)
        .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX))
}

/// "NOT_FOUND: group 7 does not exist on this node".
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    let code = format!("{:?}", s.code());
    let mut upper = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            upper.push('_');
        }
        upper.push(c.to_ascii_uppercase());
    }
    anyhow::anyhow!("{upper}: {}", s.message())
}
