export { grpcCodeFor, toStatus, toServiceError, errnoOf, ERRNO_METADATA_KEY, ERROR_DOMAIN } from './status';
